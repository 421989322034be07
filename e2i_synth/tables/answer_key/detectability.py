"""Which plants a scenario's size can carry, judged before anything is written.

A plant is detectable when the reference method finds it with power >= DETECTABLE_POWER. The
powers come from a pilot: the answer-key tables generated for the scenario itself (at most at
scale 1; the causal estimator's spread is then rescaled to the scenario's patients, and the
feature store's windows only grow above scale 1, which can only raise the power). A plant below
the line is not refused: it is reported, and ground_truth records `detectable: false`, so a
scorer can tell "the plant is weak at this size" from "the agent missed it".
"""

import math
from dataclasses import dataclass

from e2i_synth.core.scenario import Scenario
from e2i_synth.tables.answer_key.bounds import DETECTABLE_POWER, power_two_sided
from e2i_synth.tables.answer_key.causal import causal_answer
from e2i_synth.tables.answer_key.drift import drift_answers
from e2i_synth.tables.answer_key.gaps import gap_answers, scored_rows
from e2i_synth.tables.answer_key.sample import generate_answer_key_tables


@dataclass(frozen=True)
class Detectability:
    field: str  # the scenario field of the plant, e.g. causal.true_ate or gaps.1
    subject: str
    power: float

    @property
    def detectable(self) -> bool:
        return self.power >= DETECTABLE_POWER

    def describe(self) -> str:
        verdict = "detectable" if self.detectable else "NOT detectable"
        return (
            f"{self.field} ({self.subject}): {verdict}, power {self.power:.2f} of the reference "
            f"method (threshold {DETECTABLE_POWER:g})"
        )


def detectability(scenario: Scenario) -> list[Detectability]:
    """The power of the reference method for every plant of the scenario."""
    pilot = scenario if scenario.scale <= 1 else scenario.model_copy(update={"scale": 1.0})
    tables = generate_answer_key_tables(pilot)
    found = []
    if scenario.causal.true_ate != 0:
        answer = causal_answer(pilot, tables.patient_journeys)
        power = 0.0  # not even estimable in a sample this small
        if answer.estimator_sd:
            sd = answer.estimator_sd * math.sqrt(pilot.n_patients / scenario.n_patients)
            power = float(power_two_sided(scenario.causal.true_ate / sd))
        found.append(
            Detectability(
                "causal.true_ate",
                f"{scenario.causal.true_ate:g} per point, {scenario.n_patients} patients",
                power,
            )
        )
    answers = {
        a.feature: a
        for a in drift_answers(
            pilot, tables.features, tables.feature_values, patient_journeys=tables.patient_journeys
        )
    }
    for i, drift in enumerate(scenario.drifts):
        found.append(
            Detectability(
                f"drifts.{i}",
                f"{drift.feature} {drift.kind} {drift.magnitude:g}",
                answers[drift.feature].power or 0.0,
            )
        )
    scored = scored_rows(pilot, tables.business_metrics)
    planted = [a for a in gap_answers(pilot, scored) if a.imprint_of is None]  # not imprints
    for i, gap in enumerate(planted):
        found.append(
            Detectability(
                f"gaps.{i}",
                f"{gap.key} at {gap.gap.achievement_rate:g}",
                gap.min_power if gap.min_power is not None else 0.0,
            )
        )
    return found
