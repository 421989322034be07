"""The blocking answer-key checks never fail on a valid scenario: each bundled scenario under
many seeds, through the pure generators (no database), with zero blocking failures; and the
same checks do fail when the data contradicts the scenario."""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import polars as pl
import pytest

import e2i_synth.scenarios
from e2i_synth.core.scenario import Scenario, load_scenario
from e2i_synth.tables.answer_key import causal, drift, gaps
from e2i_synth.tables.answer_key.detectability import detectability
from e2i_synth.tables.answer_key.sample import AnswerKeyTables, generate_answer_key_tables

# Spawned, not forked: a fork of a process whose polars threads hold a lock deadlocks.
SPAWN = multiprocessing.get_context("spawn")

SCENARIOS = ("default", "null", "strong")
SEEDS_PER_SCENARIO = 200
# The other rungs of the ladder (issue 15) share the generators' code paths with these three
# except for what they add (a ramp, a recovering gap, a seasonal feature, other coefficients,
# scale 2): fewer seeds each keeps this test within minutes on two cores.
LADDER_RUNGS = ("easy", "weak_effect", "confounded", "gradual_drift", "seasonal", "recovering_gap")
SEEDS_PER_RUNG = 40
# Seeds on which the previous, statistical blocking checks failed (issue 11).
KNOWN_BAD_SEEDS = {"default": 80190, "strong": 900012, "null": 700004}


def _bundled(name: str) -> Scenario:
    return load_scenario(e2i_synth.scenarios.bundled_path(name))


def blocking_failures(scenario: Scenario, tables: AnswerKeyTables) -> list[str]:
    """Names of the blocking answer-key checks that fail on these tables."""
    verdicts = [
        *causal.causal_verdicts(scenario, causal.causal_answer(scenario, tables.patient_journeys)),
        *drift.drift_verdicts(
            scenario,
            drift.drift_answers(scenario, tables.features, tables.feature_values, with_power=False),
        ),
    ]
    scored = gaps.scored_rows(scenario, tables.business_metrics)
    verdicts += gaps.gap_verdicts(scenario, scored, gaps.gap_answers(scenario, scored))
    rules = causal.RULES | drift.RULES | gaps.RULES
    return [v.name for v in verdicts if rules[v.name].blocking and not v.passed]


def _failures_for_seeds(name: str, seeds: list[int]) -> list[tuple[int, list[str]]]:
    base = _bundled(name)
    found = []
    for seed in seeds:
        scenario = base.model_copy(update={"seed": seed})
        failed = blocking_failures(scenario, generate_answer_key_tables(scenario))
        if failed:
            found.append((seed, failed))
    return found


@pytest.mark.soak  # minutes of CPU on two cores: `make soak`
@pytest.mark.parametrize("name", SCENARIOS + LADDER_RUNGS)
def test_blocking_checks_never_fail_on_valid_seeds(name):
    count = SEEDS_PER_SCENARIO if name in SCENARIOS else SEEDS_PER_RUNG
    seeds = [KNOWN_BAD_SEEDS.get(name, 80190), *range(1, count)]
    assert len(set(seeds)) == count
    halves = [seeds[0::2], seeds[1::2]]  # two processes: the machines have two cores
    with ProcessPoolExecutor(max_workers=2, mp_context=SPAWN) as pool:
        found = [f for part in pool.map(_failures_for_seeds, [name] * 2, halves) for f in part]
    assert found == []


@pytest.fixture(scope="module")
def default() -> tuple[Scenario, AnswerKeyTables]:
    scenario = _bundled("default")
    return scenario, generate_answer_key_tables(scenario)


def test_the_bundled_seed_passes(default):
    assert blocking_failures(*default) == []


def test_an_outcome_that_is_not_the_models_draw_fails(default):
    scenario, tables = default
    flipped = tables.patient_journeys.with_columns(
        treatment_initiated=pl.when(pl.col("patient_id") == "PAT0000007")
        .then(~pl.col("treatment_initiated"))
        .otherwise(pl.col("treatment_initiated"))
    )
    bad = AnswerKeyTables(flipped, tables.features, tables.feature_values, tables.business_metrics)
    assert blocking_failures(scenario, bad) == ["causal_model_holds"]


def test_data_without_the_planted_effect_fails(default):
    scenario, _ = default
    no_effect = scenario.model_copy(
        update={"causal": scenario.causal.model_copy(update={"true_ate": 0.0})}
    )
    tables = generate_answer_key_tables(no_effect)
    assert "causal_model_holds" in blocking_failures(scenario, tables)


def test_an_unplanted_drift_fails(default):
    scenario, _ = default
    extra = scenario.drifts + (
        scenario.drifts[0].model_copy(update={"feature": "age_at_diagnosis", "magnitude": 0.5}),
    )
    tables = generate_answer_key_tables(scenario.model_copy(update={"drifts": extra}))
    assert blocking_failures(scenario, tables) == ["feature_values_stationary_unless_planted"]


def test_a_missing_window_day_fails(default):
    scenario, tables = default
    first = tables.feature_values["event_timestamp"].min()
    short = tables.feature_values.filter(pl.col("event_timestamp").dt.date() != first.date())
    bad = AnswerKeyTables(tables.patient_journeys, tables.features, short, tables.business_metrics)
    assert blocking_failures(scenario, bad) == ["feature_values_stationary_unless_planted"]


def test_a_planted_drift_says_where_it_shows_and_how_much(default):
    scenario, tables = default
    journeys = tables.patient_journeys
    answers = {
        a.feature: a
        for a in drift.drift_answers(
            scenario, tables.features, tables.feature_values, with_power=False
        )
    }
    engagement = next(d for d in scenario.drifts if d.feature == "engagement_score")
    places = drift.shows_in(scenario, engagement, journeys)
    where = {(p["table"], p["column"], p["rows"].split(" (")[0]): p for p in places}
    # In the world: the patients diagnosed from the start have the shifted attribute ...
    column = where[("patient_journeys", "engagement_score", places[0]["rows"].split(" (")[0])]
    assert column["expected"]["mean_shift_sd"] == engagement.magnitude
    after = pl.col("journey_start_date") >= engagement.start
    new, old = (
        journeys.filter(after)["engagement_score"],
        journeys.filter(~after)["engagement_score"],
    )
    assert abs((new.mean() - old.mean()) / old.std() - engagement.magnitude) < 0.15
    # ... and feature_values shows it diluted by the patients diagnosed before.
    values = where[("feature_values", "value", "the values of feature engagement_score")]
    assert 0.3 < values["expected_share_of_current_window_values_of_drifted_patients"] < 0.95
    expected = values["expected_in_current_window"]["mean_shift_sd"]
    assert 0.2 * engagement.magnitude < expected < engagement.magnitude
    assert abs(answers["engagement_score"].realised["mean_shift_sd"] - expected) < 0.15
    # Downstream: outcome_probability must rise, treatment_propensity is not downstream.
    outcome = where[("feature_values", "value", "the values of feature outcome_probability")]
    assert outcome["must_move"] and outcome["direction"] == "up"
    assert outcome["expected_mean_change_in_current_window"] > 0
    assert not any("treatment_propensity" in p["rows"] for p in places)
    initiated = next(p for p in places if p["column"] == "treatment_initiated")
    assert initiated["expected_rate_change"] > 0
    ramp = engagement.model_copy(update={"ramp_days": 180})
    slower = drift.shows_in(scenario, ramp, journeys)[1]["expected_in_current_window"]
    assert 0 < slower["mean_shift_sd"] < expected
    # A drift of an HCP feature stays an edit of feature_values, and says so.
    edit = engagement.model_copy(update={"feature": "years_experience"})
    (place,) = drift.shows_in(scenario, edit)
    assert place["table"] == "feature_values" and "no other table" in place["note"]


@pytest.mark.parametrize("change", ["unplanted_gap", "weaker_gap"])
def test_business_metrics_off_plan_fail(default, change):
    scenario, _ = default
    gap = scenario.gaps[0]
    if change == "unplanted_gap":
        other = gap.model_copy(update={"region": "south"})
        generated = scenario.model_copy(update={"gaps": (*scenario.gaps, other)})
    else:
        # The shock took refills at random: a rate this far from the declared one is beyond
        # the check's bound on the draw.
        weaker = gap.model_copy(update={"achievement_rate": 0.99})
        generated = scenario.model_copy(update={"gaps": (weaker, *scenario.gaps[1:])})
    tables = generate_answer_key_tables(generated)
    assert blocking_failures(scenario, tables) == ["business_metrics_match_plan"]


def test_the_ladder_is_every_bundled_file():
    files = {p.stem for p in e2i_synth.scenarios.FOLDER.glob("*.yaml")}
    assert files == set(e2i_synth.scenarios.LADDER) == set(SCENARIOS + LADDER_RUNGS)


# What each hard rung's plants are, at its own size: detectable with margin, or (the
# confounded rung's effect) intentionally below the line, so ground_truth says detectable false.
LADDER_POWER = {
    # (The engagement drift widens engagement's spread among the new patients: a little more
    # power than without it, 0.91 at the bundled seed.)
    "weak_effect": {"causal.true_ate": (0.80, 0.93)},
    "confounded": {"causal.true_ate": (0.45, 0.70)},
}


@pytest.mark.parametrize("name", LADDER_RUNGS)
def test_every_rung_is_judged_by_detectability(name):
    scenario = _bundled(name)
    plants = detectability(scenario)
    assert len(plants) == 1 + len(scenario.drifts) + len(scenario.gaps)
    for plant in plants:
        low, high = LADDER_POWER.get(name, {}).get(plant.field, (0.9, 1.0))
        assert low <= plant.power <= high, plant.describe()


@pytest.mark.parametrize("name", ["default", "strong"])
def test_bundled_plants_are_detectable_with_margin(name):
    plants = detectability(_bundled(name))
    scenario = _bundled(name)
    assert len(plants) == 1 + len(scenario.drifts) + len(scenario.gaps)
    assert all(p.power >= 0.95 for p in plants), [p.describe() for p in plants]


def test_a_plant_too_weak_for_the_scale_is_reported_not_detectable():
    small = _bundled("default").model_copy(update={"scale": 0.1})
    weak = [p for p in detectability(small) if not p.detectable]
    # 250 patients for 4 points per engagement point; a window of about 100 patients (KS at
    # the effective size: a patient's repeated values are not new draws) for a 35% insurance
    # tier mix, or for comorbidity counts spread 2.5 times (partly clipped away at 0: flagged
    # in 29 of seeds 1-60 at this scale); and the access shock on Kisqali northeast TRx meets
    # a world of one or two fills a month there, some months none to take.
    assert [p.field for p in weak] == ["causal.true_ate", "drifts.1", "drifts.2", "gaps.0"]
    assert 0.2 < weak[0].power < 0.6
    assert "NOT detectable" in weak[0].describe()
    # and the answer key says so for the data of that scale
    tables = generate_answer_key_tables(small)
    answer = causal.causal_answer(small, tables.patient_journeys)
    assert answer.detectable is False and answer.as_details()["detectable"] is False


def test_plants_too_weak_for_the_scale_are_listed_not_required_by_the_warnings():
    """The default scenario at scale small: the Kisqali TRx shock and the insurance tier mix,
    reported not detectable before the run, are missed, and the warnings pass: they judge the
    detectable plants (and would fail on these)."""
    small = _bundled("default").model_copy(update={"scale": 0.1})
    tables = generate_answer_key_tables(small)
    scored = gaps.scored_rows(small, tables.business_metrics)
    gap_answers = gaps.gap_answers(small, scored)
    missed = [a.key for a in gap_answers if a.months_flagged < a.months / 2]
    assert "Kisqali/northeast/trx" in missed
    assert all(not a.detectable for a in gap_answers if a.key in missed)
    drifts = drift.drift_answers(
        small, tables.features, tables.feature_values, patient_journeys=tables.patient_journeys
    )
    unflagged = [a for a in drifts if a.planted is not None and not a.flagged]
    assert [a.feature for a in unflagged] == ["insurance_tier"] and not unflagged[0].detectable
    verdicts = {
        v.name: v
        for v in [
            *gaps.gap_verdicts(small, scored, gap_answers),
            *drift.drift_verdicts(small, drifts),
        ]
    }
    assert verdicts["gaps_recovered"].passed, verdicts["gaps_recovered"].metadata
    assert verdicts["drift_recovered"].passed, verdicts["drift_recovered"].metadata
    assert verdicts["drift_recovered"].metadata["undetectable_planted"] == [
        "comorbidity_count",
        "insurance_tier",
    ]


def test_a_sample_too_small_to_estimate_still_passes_its_blocking_checks():
    tiny = _bundled("default").model_copy(update={"scale": 0.002})  # 5 patients
    tables = generate_answer_key_tables(tiny)
    assert blocking_failures(tiny, tables) == []
    answer = causal.causal_answer(tiny, tables.patient_journeys)
    assert answer.adjusted is None and answer.power == 0.0 and answer.outcome_mismatches == 0


def test_the_answer_key_does_not_depend_on_the_order_rows_are_read():
    from e2i_synth.tables.answer_key.ground_truth import generate_ground_truth

    scenario = _bundled("default").model_copy(update={"scale": 0.1})
    t = generate_answer_key_tables(scenario)
    as_generated = generate_ground_truth(
        scenario, t.patient_journeys, t.features, t.feature_values, t.business_metrics, "v"
    )
    shuffled = generate_ground_truth(
        scenario,
        t.patient_journeys.sample(fraction=1.0, shuffle=True, seed=1),
        t.features.reverse(),
        t.feature_values.sample(fraction=1.0, shuffle=True, seed=2),
        t.business_metrics.sample(fraction=1.0, shuffle=True, seed=3),
        "v",
    )
    assert as_generated.equals(shuffled)
