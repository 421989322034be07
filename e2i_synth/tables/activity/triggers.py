"""triggers generator: alerts the agents raise for HCPs, day by day, with their lifecycle.

Drawn like ml_predictions (one random stream per day, keys numbered within the day), so any
window's rows are the union of its days' rows. Patient triggers fire while the patient's
journey is open: at diagnosis, while a likely-to-start patient is untreated, and while a
treated one is on therapy (the patient's timeline: never after a switch or discontinuation)
and risks a switch. A refill_gap fires on the day the patient's supply has been out for more
than REFILL_GAP_LATE_DAYS with no refill nor stop yet (a late refill, a lapse, or the run-up to
a stop): all it knows is that no refill came by its date. engagement_drop is about the HCP.
Every row carries the split of its own date. Each trigger then is delivered, viewed and
accepted, dismissed or left to expire after EXPIRY_DAYS; its status is what was observed by the
end of the scenario (later steps are not known yet).
"""

from datetime import date, timedelta

import numpy as np
import polars as pl

from e2i_synth.core.scenario import ENGAGEMENT_MAX, Scenario
from e2i_synth.core.split import split_for_dates
from e2i_synth.core.vocabulary import BRAND_INDICATION
from e2i_synth.tables.activity.ml_predictions import (
    EPOCH,
    REFILL_GAP_LATE_DAYS,
    Population,
    daily_draws,
    population,
    timestamp_and_id,
)
from e2i_synth.tables.activity.triggers_model import PRIORITIES, SPEC, TRIGGER_TYPES

TABLE = "triggers"
TYPE_CODE = {t: i for i, t in enumerate(TRIGGER_TYPES)}
US_PER_SECOND = 1_000_000
DAY_US = 86_400 * US_PER_SECOND
HOUR_US = 3_600 * US_PER_SECOND

NEW_PATIENT_SHARE = 0.6  # diagnoses that raise a trigger
HIGH_PROPENSITY_MIN = 0.45  # true P(treatment) from which an untreated patient is flagged
HIGH_PROPENSITY_PER_DAY = 1 / 120
REFILL_GAP_SHARE = 0.6  # of refill gaps that the agent flags
# Switch risk per day, doubled at zero engagement.
SWITCH_RISK_PER_DAY = 1 / 500
ENGAGEMENT_DROP_PER_HCP_PER_DAY = 1 / 500
# Priority = floor(base + 0.1 * severity (or decile for HCPs) + noise), clipped to the levels.
PRIORITY_BASE: dict[str, float] = {
    "new_patient_diagnosed": 0.8,
    "refill_gap": 1.4,
    "high_propensity": 1.1,
    "competitive_switch_risk": 1.8,
    "engagement_drop": 0.5,
}
PRIORITY_NOISE = 2.0  # width of the uniform noise
CHANNEL_WEIGHTS: dict[str, float] = {"rep_app": 0.55, "email": 0.25, "crm_task": 0.20}
VIEW_SHARE: dict[str, float] = {"rep_app": 0.8, "email": 0.55, "crm_task": 0.7}
UNDELIVERED_SHARE = 0.02
ACCEPT_SHARE = 0.55  # of viewed triggers; DISMISS_SHARE more are dismissed, the rest ignored
DISMISS_SHARE = 0.30
MEAN_DELIVERY_US = 20 * 60 * US_PER_SECOND
MEAN_VIEW_US = 18 * HOUR_US
MEAN_RESOLVE_US = 36 * HOUR_US
EXPIRY_DAYS = 14
# Uniforms per row: time of day, priority, channel, delivery failure and delay, view and its
# delay, outcome and its delay.
DRAWS_PER_ROW = 9


def generate_triggers(
    scenario: Scenario,
    hcp_profiles: pl.DataFrame,
    patient_journeys: pl.DataFrame,
    start: date,
    end: date,
) -> pl.DataFrame:
    """Triggers whose created_at falls in [start, end)."""
    return triggers_in_window(
        scenario, population(scenario, hcp_profiles, patient_journeys), start, end
    )


def triggers_in_window(scenario: Scenario, pop: Population, start: date, end: date) -> pl.DataFrame:
    """generate_triggers from a population built once (the asset raises them month by month)."""
    engagement = pop.patients["engagement_score"].to_numpy()
    switch_risk = SWITCH_RISK_PER_DAY * (2 - engagement / ENGAGEMENT_MAX)
    likely = pop.p_true >= HIGH_PROPENSITY_MIN

    def select(rng: np.random.Generator, pop: Population, day: int) -> tuple[np.ndarray, ...]:
        # Fixed-size draws every day, so each day's stream is used the same way.
        u_new, u_high, u_gap, u_switch = rng.random((4, pop.n_patients))
        gaps = pop.gaps_opening_on(day)
        flagged = np.zeros(pop.n_patients, dtype=np.bool_)
        flagged[gaps[u_gap[gaps] < REFILL_GAP_SHARE]] = True
        u_drop = rng.random(pop.n_hcps)
        active = (pop.start <= day) & (day <= pop.end)
        treated = pop.on_therapy(day) & (pop.first_rx < day)
        groups = (
            ("new_patient_diagnosed", (pop.start == day) & (u_new < NEW_PATIENT_SHARE)),
            (
                "high_propensity",
                active
                & (pop.start < day)
                & (day < pop.first_rx)
                & likely
                & (u_high < HIGH_PROPENSITY_PER_DAY),
            ),
            ("refill_gap", flagged),
            ("competitive_switch_risk", treated & (u_switch < switch_risk)),
            ("engagement_drop", u_drop < ENGAGEMENT_DROP_PER_HCP_PER_DAY),
        )
        picked = [(TYPE_CODE[t], np.flatnonzero(mask)) for t, mask in groups]
        return (
            np.concatenate([np.full(e.size, k, dtype=np.int64) for k, e in picked]),
            np.concatenate([e for _, e in picked]).astype(np.int64),
        )

    rows = daily_draws(scenario, TABLE, pop, start, end, select, DRAWS_PER_ROW)
    patient_kinds = [TYPE_CODE[t] for t, about_patient in TRIGGER_TYPES.items() if about_patient]
    is_patient = pl.col("_kind").is_in(patient_kinds)
    cutoff_us = (scenario.end_date + timedelta(days=1) - EPOCH).days * DAY_US
    return (
        pl.concat(
            [
                _patient_triggers(rows.filter(is_patient), pop, scenario),
                _hcp_triggers(rows.filter(~is_patient), pop, scenario),
            ],
            how="diagonal",
        )
        .sort("_day", "_us", "_kind", "_entity")
        .with_columns(
            trigger_type=pl.col("_kind").replace_strict(
                dict(enumerate(TRIGGER_TYPES)), return_dtype=pl.String
            ),
            channel=_choose(CHANNEL_WEIGHTS, "_u2"),
            **timestamp_and_id("TRG", "trigger_id", "created_at"),
        )
        .with_columns(
            priority=_priority(),
            **_lifecycle(cutoff_us),
        )
        .select(SPEC.columns)
    )


def _patient_triggers(rows: pl.DataFrame, pop: Population, scenario: Scenario) -> pl.DataFrame:
    idx = rows["_entity"].to_numpy()
    patients = pop.patients[idx].select(
        "patient_id", "hcp_id", "brand", "disease_severity", "engagement_score"
    )
    frame = pl.concat(
        [rows, patients, pl.DataFrame({"_p_true": pop.p_true[idx]})], how="horizontal"
    )
    patient, brand = pl.col("patient_id"), pl.col("brand")
    indication = brand.replace_strict(BRAND_INDICATION, return_dtype=pl.String)
    kind = pl.col("_kind")
    reason = (
        pl.when(kind == TYPE_CODE["new_patient_diagnosed"])
        .then(
            pl.format(
                "{} newly diagnosed with {} (severity {}/10)",
                patient,
                indication,
                pl.col("disease_severity"),
            )
        )
        .when(kind == TYPE_CODE["high_propensity"])
        .then(
            pl.format(
                "{} is untreated with an estimated {}% chance to start {}",
                patient,
                (pl.col("_p_true") * 100).round(0).cast(pl.Int64),
                brand,
            )
        )
        .when(kind == TYPE_CODE["refill_gap"])
        .then(
            pl.format(
                "{} has not refilled {}: the last supply ran out {} days ago",
                patient,
                brand,
                pl.lit(REFILL_GAP_LATE_DAYS + 1),
            )
        )
        .otherwise(
            pl.format(
                "{} is at risk of switching away from {} (engagement {}/10)",
                patient,
                brand,
                pl.col("engagement_score").round(1),
            )
        )
    )
    return frame.with_columns(
        reason=reason,
        _weight=0.1 * pl.col("disease_severity"),
        data_split=split_for_dates(pl.col("_day"), scenario),
    )


def _hcp_triggers(rows: pl.DataFrame, pop: Population, scenario: Scenario) -> pl.DataFrame:
    idx = rows["_entity"].to_numpy()
    hcps = pop.hcps[idx].select("hcp_id", "decile", "digital_engagement", brand="brand_focus")
    return pl.concat([rows, hcps], how="horizontal").with_columns(
        patient_id=pl.lit(None, dtype=pl.String),
        reason=pl.format(
            "{} engages less with {} (decile {}, digital share {}%)",
            pl.col("hcp_id"),
            pl.col("brand"),
            pl.col("decile"),
            (pl.col("digital_engagement") * 100).round(0).cast(pl.Int64),
        ),
        _weight=0.1 * pl.col("decile").cast(pl.Float64),
        data_split=split_for_dates(pl.col("_day"), scenario),
    )


def _priority() -> pl.Expr:
    base = pl.col("trigger_type").replace_strict(PRIORITY_BASE, return_dtype=pl.Float64)
    level = (base + pl.col("_weight") + PRIORITY_NOISE * (pl.col("_u1") - 0.5)).floor()
    return (
        level.clip(0, len(PRIORITIES) - 1)
        .cast(pl.Int64)
        .replace_strict(dict(enumerate(PRIORITIES)), return_dtype=pl.String)
    )


def _choose(weights: dict[str, float], uniform: str) -> pl.Expr:
    """A key of `weights`, picked with probability proportional to its weight by a uniform."""
    keys = list(weights)
    bounds = np.cumsum([weights[k] for k in keys]) / sum(weights.values())
    expr = pl.lit(keys[-1])
    for key, bound in reversed(list(zip(keys[:-1], bounds[:-1], strict=True))):
        expr = pl.when(pl.col(uniform) < bound).then(pl.lit(key)).otherwise(expr)
    return expr


def _exponential(mean_us: float, uniform: str) -> pl.Expr:
    """An exponential delay in microseconds, in whole seconds."""
    seconds = (-mean_us / US_PER_SECOND * (1 - pl.col(uniform)).log()).floor()
    return seconds.cast(pl.Int64) * US_PER_SECOND


def _lifecycle(cutoff_us: int) -> dict[str, pl.Expr]:
    """Status and lifecycle timestamps, as observed at cutoff_us (microseconds since 1970)."""
    created = pl.col("_day").cast(pl.Int64) * DAY_US + pl.col("_us")
    expiry = created + EXPIRY_DAYS * DAY_US
    delivered = created + _exponential(MEAN_DELIVERY_US, "_u4")
    viewed = delivered + _exponential(MEAN_VIEW_US, "_u6")
    answered_at = viewed + _exponential(MEAN_RESOLVE_US, "_u8")

    is_delivered = pl.col("_u3") >= UNDELIVERED_SHARE
    view_share = pl.col("channel").replace_strict(VIEW_SHARE, return_dtype=pl.Float64)
    is_viewed = is_delivered & (pl.col("_u5") < view_share) & (viewed <= expiry)
    answered = is_viewed & (pl.col("_u7") < ACCEPT_SHARE + DISMISS_SHARE) & (answered_at <= expiry)
    outcome = (
        pl.when(pl.col("_u7") < ACCEPT_SHARE)
        .then(pl.lit("accepted"))
        .otherwise(pl.lit("dismissed"))
    )
    # Delivered but unanswered triggers expire; undelivered ones stay created.
    resolved = pl.when(answered).then(answered_at).when(is_delivered).then(expiry)
    final = pl.when(answered).then(outcome).when(is_delivered).then(pl.lit("expired"))

    seen_delivered = is_delivered & (delivered <= cutoff_us)
    seen_viewed = is_viewed & (viewed <= cutoff_us)
    seen_resolved = resolved.is_not_null() & (resolved <= cutoff_us)
    return {
        "status": pl.when(seen_resolved)
        .then(final)
        .when(seen_viewed)
        .then(pl.lit("viewed"))
        .when(seen_delivered)
        .then(pl.lit("delivered"))
        .otherwise(pl.lit("created")),
        "delivered_at": _utc(pl.when(seen_delivered).then(delivered)),
        "viewed_at": _utc(pl.when(seen_viewed).then(viewed)),
        "resolved_at": _utc(pl.when(seen_resolved).then(resolved)),
    }


def _utc(microseconds: pl.Expr) -> pl.Expr:
    return microseconds.cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
