"""The scenario: everything a generated dataset depends on, validated before anything runs.

A scenario is loaded from YAML (the packaged default or a user file), optionally with a scale
override, and validated by pydantic. Every error names the field it is about.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from e2i_synth.core.vocabulary import BRAND_METRICS, BRANDS, COMMON_METRICS, FEATURES, REGIONS

# Sizes of the system we replace at scale 1.0 ("full").
FULL_HCPS = 500
FULL_PATIENTS = 2_500
SCALE_PRESETS: dict[str, float] = {"small": 0.1, "full": 1.0}
MAX_SCALE = 1000.0  # 2.5 million patients: beyond it, memory and time are not bounded
MAX_SEED = 2**63 - 1  # ground_truth.seed is a bigint
MAX_SCENARIO_BYTES = 1_000_000  # the default scenario is about 1 kB; refused before parsing
MAX_NAME_CHARS = 200
# An error message quotes at most this much of any line, and this many lines.
MAX_ERROR_LINE_CHARS = 300
MAX_ERROR_LINES = 20
SCENARIO_ENV = "E2I_SCENARIO"  # the scenario Dagster's partitions start from
ENGAGEMENT_MAX = 10.0
SEVERITY_MAX = 10.0


class ScenarioError(ValueError):
    """A scenario that cannot be used; the message names the offending field.

    The message is kept short whatever the input: long lines (a YAML snippet, an echoed value)
    are cut, and only the first errors are listed."""

    def __init__(self, message: str) -> None:
        super().__init__(_clip(message))


def _clip(message: str) -> str:
    lines = message.splitlines() or [""]
    cut = [
        line if len(line) <= MAX_ERROR_LINE_CHARS else f"{line[:MAX_ERROR_LINE_CHARS]}... (cut)"
        for line in lines[:MAX_ERROR_LINES]
    ]
    if len(lines) > MAX_ERROR_LINES:
        cut.append(f"  ... and {len(lines) - MAX_ERROR_LINES} more line(s)")
    return "\n".join(cut)


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN and infinity are refused in every float field.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class CausalModel(_Strict):
    """How engagement_score affects treatment_initiated, and what confounds it.

    P(treatment_initiated) = baseline_probability + true_ate * engagement_score
                             + severity_on_treatment * disease_severity
                             + academic_on_treatment * academic_hcp
    engagement_score = clip(engagement_intercept + severity_on_engagement * disease_severity
                            + academic_on_engagement * academic_hcp + noise, 0, 10)
    A linear probability model keeps the average treatment effect exactly true_ate per point.
    """

    true_ate: float = Field(0.04, description="change in P(treatment) per engagement point")
    baseline_probability: float = Field(0.04, ge=0, le=1)
    severity_on_treatment: float = 0.03
    academic_on_treatment: float = 0.12
    engagement_intercept: float = 2.0
    severity_on_engagement: float = 0.45
    academic_on_engagement: float = 1.5
    engagement_noise_sd: float = Field(1.2, gt=0)

    @model_validator(mode="after")
    def _probabilities_stay_in_unit_interval(self) -> CausalModel:
        # The extreme probabilities sit at the corners of the covariates' support.
        lo, hi = self.probability_range()
        if lo < 0 or hi > 1:
            raise ValueError(
                f"true_ate={self.true_ate} with these confounder strengths gives "
                f"P(treatment_initiated) in [{lo:.3f}, {hi:.3f}]; no probability model allows "
                "values outside [0, 1] (lower causal.true_ate or the other coefficients)"
            )
        return self

    def treatment_probability(self, engagement: Any, severity: Any, academic: Any) -> Any:
        """P(treatment_initiated) of the model, for numpy arrays or polars expressions alike:
        the one statement of it that the generators, the answer key and its checks share."""
        return (
            self.baseline_probability
            + self.true_ate * engagement
            + self.severity_on_treatment * severity
            + self.academic_on_treatment * academic
        )

    def expected_engagement(self, severity: Any, academic: Any) -> Any:
        """engagement_score before its noise and clipping, given the confounders (numpy,
        polars or SQL expressions alike): the generators and the checks share it."""
        return (
            self.engagement_intercept
            + self.severity_on_engagement * severity
            + self.academic_on_engagement * academic
        )

    def probability_range(self) -> tuple[float, float]:
        terms = [
            (0.0, self.true_ate * ENGAGEMENT_MAX),
            (0.0, self.severity_on_treatment * SEVERITY_MAX),
            (0.0, self.academic_on_treatment),
        ]
        lo = self.baseline_probability + sum(min(a, b) for a, b in terms)
        hi = self.baseline_probability + sum(max(a, b) for a, b in terms)
        return lo, hi


class MonitoringWindows(_Strict):
    """The Drift Monitor's windows over feature_values event timestamps: [start, end)."""

    baseline_start: date = date(2025, 7, 1)
    baseline_end: date = date(2025, 10, 1)
    current_start: date = date(2026, 4, 1)
    current_end: date = date(2026, 7, 1)

    @model_validator(mode="after")
    def _ordered(self) -> MonitoringWindows:
        if not self.baseline_start < self.baseline_end <= self.current_start < self.current_end:
            raise ValueError(
                "windows must satisfy baseline_start < baseline_end <= current_start < current_end"
            )
        return self


class DriftSpec(_Strict):
    """A planted drift: from `start`, the feature's values change by `kind` and `magnitude`.

    mean_shift: values move by `magnitude` standard deviations of the feature.
    variance_change: the spread around the mean is multiplied by `magnitude`.
    category_mix: a share `magnitude` (0-1) of values move to another category.

    With `ramp_days` the change is gradual: it grows linearly from nothing at `start` to the
    full magnitude `ramp_days` days later (without it, a step at `start`).
    """

    feature: str
    kind: Literal["mean_shift", "variance_change", "category_mix"]
    start: date
    magnitude: float
    ramp_days: int | None = Field(None, ge=1, le=3660, strict=True)

    def fraction(self, days_since_start: Any) -> Any:
        """Share of the magnitude reached `days_since_start` days after start (numpy arrays or
        floats): 0 before start, 1 from the end of the ramp (at once without a ramp)."""
        import numpy as np

        elapsed = np.asarray(days_since_start, dtype=float)
        if self.ramp_days is None:
            return (elapsed >= 0).astype(float)
        return np.clip(elapsed / self.ramp_days, 0.0, 1.0) * (elapsed >= 0)

    @field_validator("feature")
    @classmethod
    def _known_feature(cls, value: str) -> str:
        return known_feature(value)

    @model_validator(mode="after")
    def _kind_fits(self) -> DriftSpec:
        value_type = FEATURES[self.feature][1]
        if self.kind == "category_mix":
            if value_type not in ("category", "bool"):
                raise ValueError(
                    f"kind category_mix needs a categorical feature, {self.feature} is {value_type}"
                )
            if not 0 < self.magnitude <= 1:
                raise ValueError("magnitude of category_mix is a share in (0, 1]")
        elif value_type in ("category", "bool"):
            raise ValueError(
                f"kind {self.kind} needs a numeric feature, {self.feature} is {value_type}"
            )
        elif self.kind == "variance_change" and self.magnitude <= 0:
            raise ValueError("magnitude of variance_change is a positive multiplier of the spread")
        elif self.kind == "mean_shift" and self.magnitude == 0:
            raise ValueError("magnitude of mean_shift must not be 0")
        return self


# Gaps on these metrics are refill shocks in the world (e2i_synth.world.timelines): on trx or
# market_share an access shock (renewals denied), on adherence_rate patients missing refills.
SHOCK_METRICS = ("trx", "market_share", "adherence_rate")
# Gaps on these are start shocks in the world (e2i_synth.world.initiation): fewer of the
# patients diagnosed in the gap's months start therapy.
START_SHOCK_METRICS = ("nrx", "conversion_rate")
# Why a gap cannot be planted on the other metrics: it would have no cause in the world.
NO_WORLD_CAUSE = {
    "hcp_engagement_score": "the world does not simulate the HCPs' contacts with the brand",
    "os_rate": "overall survival is a clinical outcome the world does not simulate",
}


class GapSpec(_Strict):
    """A planted shortfall: from `start_month`, the series reaches only `achievement_rate` of
    its target (for example 0.8 = 20% below target), through a cause in the world. On a
    SHOCK_METRICS series it is a refill shock: each refill of the brand's patients in the region
    is dispensed with chance `achievement_rate` (e2i_synth.world.timelines), so adherence falls
    by that rate and TRx and share by a little less (first fills are untouched). On a
    START_SHOCK_METRICS series it is a start shock: each start of the brand's patients in the
    region diagnosed in the gap's months goes ahead with chance `achievement_rate`
    (e2i_synth.world.initiation), so conversion falls by that rate, NRx by about it a few weeks
    later, TRx and share by a growing part of it. With `end_month` the gap recovers: that month
    is the last one short (a start shock's patients keep their lost refills' imprint on TRx)."""

    brand: str
    region: str
    metric_name: str
    start_month: date
    achievement_rate: float = Field(gt=0, lt=1)
    end_month: date | None = None

    @model_validator(mode="after")
    def _known_series(self) -> GapSpec:
        _known("brand", (self.brand,), BRANDS)
        _known("region", (self.region,), REGIONS)
        allowed = COMMON_METRICS + BRAND_METRICS[self.brand]
        if self.metric_name not in allowed:
            raise ValueError(
                f"unknown metric_name {self.metric_name!r} for {self.brand}; known: {list(allowed)}"
            )
        if self.metric_name in NO_WORLD_CAUSE:
            plantable = [m for m in allowed if m in SHOCK_METRICS + START_SHOCK_METRICS]
            raise ValueError(
                f"metric_name {self.metric_name!r}: a planted gap needs a cause in the simulated "
                f"world, and {NO_WORLD_CAUSE[self.metric_name]}; gaps can be planted on "
                f"{plantable}"
            )
        if self.start_month.day != 1:
            raise ValueError(f"start_month {self.start_month} must be the first day of a month")
        if self.end_month is not None:
            if self.end_month.day != 1:
                raise ValueError(f"end_month {self.end_month} must be the first day of a month")
            if self.end_month < self.start_month:
                raise ValueError(
                    f"end_month {self.end_month} must not be before start_month {self.start_month}"
                )
        return self


# Features with a market-level (brand) source: the only ones that may be seasonal.
SEASONAL_FEATURES = tuple(
    name for name, (group, _) in FEATURES.items() if group == "brand_performance"
)


class SeasonalSpec(_Strict):
    """A seasonal pattern, not a drift: every value of `feature` moves by `amplitude` standard
    deviations x cos(2 pi (month - peak_month) / 12), by calendar month. Two windows on the same
    calendar days of different years hold the same distribution: it must not be flagged."""

    feature: str
    amplitude: float
    peak_month: int = Field(1, ge=1, le=12, strict=True)

    @model_validator(mode="after")
    def _brand_level(self) -> SeasonalSpec:
        if self.feature not in SEASONAL_FEATURES:
            raise ValueError(
                f"feature {self.feature!r} cannot be seasonal; seasonal features are the "
                f"market-level ones: {list(SEASONAL_FEATURES)}"
            )
        if self.amplitude == 0:
            raise ValueError("amplitude must not be 0")
        return self

    def offset_sd(self, months: Any) -> Any:
        """The shift, in standard deviations, of values observed in calendar `months` (1-12)."""
        import numpy as np

        return self.amplitude * np.cos(2 * np.pi * (np.asarray(months) - self.peak_month) / 12)


class Scenario(_Strict):
    name: str = Field("default", min_length=1, max_length=MAX_NAME_CHARS)
    # strict: YAML 1.1 reads `yes`/`true` as booleans, which must not pass for 1.
    seed: int = Field(20261126, ge=0, le=MAX_SEED, strict=True)
    scale: float = Field(
        1.0, gt=0, le=MAX_SCALE, strict=True, description="1.0 = full (500 HCPs, 2,500 patients)"
    )
    reference_date: date = date(2026, 6, 30)
    start_date: date = date(2024, 1, 1)
    end_date: date = date(2026, 6, 30)
    brands: tuple[str, ...] = BRANDS
    regions: tuple[str, ...] = REGIONS
    causal: CausalModel = CausalModel()
    monitoring: MonitoringWindows = MonitoringWindows()
    drifts: tuple[DriftSpec, ...] = ()
    gaps: tuple[GapSpec, ...] = ()
    seasonal: tuple[SeasonalSpec, ...] = ()

    @field_validator("scale", mode="before")
    @classmethod
    def _scale_preset(cls, value: Any) -> Any:
        if isinstance(value, str) and value in SCALE_PRESETS:
            return SCALE_PRESETS[value]
        return value

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL; other control characters garble logs and run tags.
        if not value.isprintable():
            raise ValueError("must be printable text (no NUL or other control characters)")
        return value

    @field_validator("brands")
    @classmethod
    def _known_brands(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("brand", value, BRANDS)

    @field_validator("regions")
    @classmethod
    def _known_regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _known("region", value, REGIONS)

    @model_validator(mode="after")
    def _dates_in_order(self) -> Scenario:
        if self.end_date <= self.start_date:
            raise ValueError(f"end_date {self.end_date} must be after start_date {self.start_date}")
        if self.end_date > self.reference_date:
            raise ValueError(
                f"end_date {self.end_date} must not be after reference_date {self.reference_date}"
            )
        for i, drift in enumerate(self.drifts):
            if not self.monitoring.baseline_end <= drift.start <= self.monitoring.current_start:
                raise ValueError(
                    f"drifts.{i}.start {drift.start} must fall between monitoring.baseline_end "
                    "and monitoring.current_start (a clean baseline, a drifted current window)"
                )
        if len({d.feature for d in self.drifts}) != len(self.drifts):
            raise ValueError("drifts: at most one drift per feature")
        for i, drift in enumerate(self.drifts):
            if drift.ramp_days is not None and (
                drift.start + timedelta(days=drift.ramp_days) > self.monitoring.current_end
            ):
                raise ValueError(
                    f"drifts.{i}.ramp_days {drift.ramp_days}: the ramp must end by "
                    f"monitoring.current_end {self.monitoring.current_end}"
                )
        self._check_seasonal()
        if len({(g.brand, g.region, g.metric_name) for g in self.gaps}) != len(self.gaps):
            raise ValueError("gaps: at most one gap per brand/region/metric_name series")
        for i, gap in enumerate(self.gaps):
            if gap.brand not in self.brands or gap.region not in self.regions:
                raise ValueError(
                    f"gaps.{i}: {gap.brand}/{gap.region} is not among the scenario's brands/regions"
                )
            if not self.start_date <= gap.start_month <= self.end_date:
                raise ValueError(
                    f"gaps.{i}.start_month {gap.start_month} is outside start_date..end_date"
                )
            if gap.end_month is not None and gap.end_month > self.end_date:
                raise ValueError(f"gaps.{i}.end_month {gap.end_month} is after end_date")
        self._check_one_shock_at_a_time()
        if self.monitoring.current_end > self.end_date + timedelta(days=1):
            raise ValueError("monitoring.current_end must not be after end_date + 1 day")
        if self.monitoring.baseline_start < self.start_date:
            raise ValueError("monitoring.baseline_start must not be before start_date")
        return self

    def _check_one_shock_at_a_time(self) -> None:
        """Two shocks of one kind on one brand and region must not overlap in time: the world
        draws one chance per refill (per start), and each shock's answer (the refills or starts
        it took) would count the other's. A start shock and a refill shock may not share a
        brand and region at all."""
        for metrics, kind in ((SHOCK_METRICS, "refill"), (START_SHOCK_METRICS, "start")):
            shocks = [(i, g) for i, g in enumerate(self.gaps) if g.metric_name in metrics]
            for n, (i, a) in enumerate(shocks):
                for j, b in shocks[n + 1 :]:
                    if (a.brand, a.region) != (b.brand, b.region):
                        continue
                    a_end, b_end = a.end_month or date.max, b.end_month or date.max
                    if a.start_month <= b_end and b.start_month <= a_end:
                        raise ValueError(
                            f"gaps.{j}: {b.metric_name} overlaps gaps.{i} ({a.metric_name}) on "
                            f"{b.brand}/{b.region}: both are {kind} shocks "
                            f"({', '.join(metrics)}), at most one per brand and region at a "
                            "time; the other series show its imprint anyway"
                        )
        refills = [(i, g) for i, g in enumerate(self.gaps) if g.metric_name in SHOCK_METRICS]
        for j, b in (
            (j, g) for j, g in enumerate(self.gaps) if g.metric_name in START_SHOCK_METRICS
        ):
            for i, a in refills:
                if (a.brand, a.region) == (b.brand, b.region):
                    raise ValueError(
                        f"gaps.{j}: {b.metric_name} (a start shock) and gaps.{i} "
                        f"({a.metric_name}, a refill shock) are on the same {b.brand}/{b.region}: "
                        "the patients a start shock keeps out would have refilled for months, "
                        "so the two would move TRx together; plant them on different series"
                    )

    def _check_seasonal(self) -> None:
        if not self.seasonal:
            return
        if len({s.feature for s in self.seasonal}) != len(self.seasonal):
            raise ValueError("seasonal: at most one pattern per feature")
        drifted = {d.feature for d in self.drifts} & {s.feature for s in self.seasonal}
        if drifted:
            raise ValueError(f"seasonal: {sorted(drifted)} also drift; a feature is one or other")
        w = self.monitoring
        years = w.current_start.year - w.baseline_start.year
        aligned = years > 0 and all(
            _same_day_later(a, b, years)
            for a, b in ((w.baseline_start, w.current_start), (w.baseline_end, w.current_end))
        )
        if not aligned:
            raise ValueError(
                "seasonal: the monitoring windows must cover the same calendar days of different "
                "years (current = baseline + whole years), or a seasonal feature would move "
                "between them"
            )

    def hash_payload(self) -> dict:
        """model_dump without the optional fields left at their default, so that scenarios
        written before those fields existed keep their hash."""
        data = self.model_dump(mode="json")
        if not data["seasonal"]:
            del data["seasonal"]
        for drift in data["drifts"]:
            if drift["ramp_days"] is None:
                del drift["ramp_days"]
        for gap in data["gaps"]:
            if gap["end_month"] is None:
                del gap["end_month"]
        return data

    @property
    def n_hcps(self) -> int:
        return max(1, round(FULL_HCPS * self.scale))

    @property
    def n_patients(self) -> int:
        return max(1, round(FULL_PATIENTS * self.scale))

    def content_hash(self) -> str:
        """Stable digest of everything that shapes the data."""
        payload = json.dumps(self.hash_payload(), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _same_day_later(a: date, b: date, years: int) -> bool:
    return (b.year - a.year, b.month, b.day) == (years, a.month, a.day)


def known_feature(value: str) -> str:
    """A feature name of the feature store, or a ValueError naming the known ones."""
    if value not in FEATURES:
        raise ValueError(f"unknown feature {value!r}; known: {list(FEATURES)}")
    return value


def _known(kind: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        raise ValueError(f"at least one {kind} is required")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}; known: {list(allowed)}")
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate {kind} in {list(values)}")
    return values


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load, but a key given twice is an error (plain YAML keeps the last one silently),
    and dates stay text for pydantic to parse, so an impossible date (2024-02-30) is an error
    that names its field instead of PyYAML's bare ValueError."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def default_scenario_text() -> str:
    return resources.files("e2i_synth.scenarios").joinpath("default.yaml").read_text()


def parse_scenario(
    text: str, source: str = "scenario", scale: float | str | None = None
) -> Scenario:
    """Parse and validate scenario YAML; errors name the file and field."""
    if len(text) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{source}: larger than {MAX_SCENARIO_BYTES:,} bytes; not a scenario")
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        # What PyYAML's constructors raise bare, e.g. for an explicit `!!timestamp 2024-02-30`
        # or nesting deep enough to exhaust the stack.
        raise ScenarioError(f"{source}: not valid YAML: {type(exc).__name__}: {exc}") from None
    if data is None:
        raise ScenarioError(f"{source}: the file is empty")
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a mapping of fields, got {type(data).__name__}")
    if scale is not None:
        data = {**data, "scale": scale}
    return build_scenario(data, source)


def build_scenario(data: dict[str, Any], source: str = "scenario") -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_describe(exc, source)) from None


def load_scenario(path: str | Path | None = None, scale: float | str | None = None) -> Scenario:
    """The packaged default scenario, or the YAML file at `path`, with an optional scale."""
    if path is None:
        return parse_scenario(default_scenario_text(), "default scenario", scale)
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(f"scenario file not found: {path}")
    try:
        with path.open("rb") as file:  # read at most one byte past the limit, never the rest
            raw = file.read(MAX_SCENARIO_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot be read: {exc}") from None
    if len(raw) > MAX_SCENARIO_BYTES:
        raise ScenarioError(f"{path}: larger than {MAX_SCENARIO_BYTES:,} bytes; not a scenario")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: not valid UTF-8 text: {exc}") from None
    return parse_scenario(text, str(path), scale)


def partitions_start() -> date:
    """First day of Dagster's partitions: the start_date of $E2I_SCENARIO, else the default's."""
    return load_scenario(os.environ.get(SCENARIO_ENV) or None).start_date


def last_loadable_day(today: date | None = None) -> date:
    """Last day a scenario may cover, as Dagster's partitions allow on `today` (UTC).

    Daily partitions end yesterday; monthly ones (business_metrics, ml_predictions, triggers)
    end with the last complete month, which is the tighter bound: the day before this month's
    first."""
    today = today or datetime.now(UTC).date()
    return today.replace(day=1) - timedelta(days=1)


def check_window(
    scenario: Scenario,
    start: date | None = None,
    today: date | None = None,
    source: str = "scenario",
) -> Scenario:
    """Refuse a scenario whose days fall outside the partitions Dagster has today.

    The one place this is checked: the CLI calls it before anything is written, and
    partitions.partition_range before it plans a backfill."""
    start = start or partitions_start()
    if scenario.start_date < start:
        raise ScenarioError(
            f"{source}: start_date {scenario.start_date} is before the partitions' start {start} "
            f"(the start_date of ${SCENARIO_ENV}, else of the default scenario); set "
            f"{SCENARIO_ENV} to this scenario file so Dagster's partitions follow it"
        )
    last = last_loadable_day(today)
    if scenario.end_date > last:
        raise ScenarioError(
            f"{source}: end_date {scenario.end_date} is after {last}, the last day of the last "
            "complete month: monthly partitions exist only for complete months (daily ones up "
            "to yesterday, UTC)"
        )
    return scenario


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(scenario)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "finite_number":
            msg = f"{msg} (NaN and infinity are refused)"
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        lines.append(f"{field}: {msg}")
    return f"{source}: invalid scenario\n  " + "\n  ".join(lines)
