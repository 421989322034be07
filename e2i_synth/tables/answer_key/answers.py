"""The benchmark's answer format: what an agent reports, per agent family, as JSON.

One JSON document per agent run, for one scenario (its `scenario_hash`, which the agent cannot
read from the database: ask the operator, or take it from `e2i-synth scenarios --hash FILE`).
Each family's section is optional: a missing section is not scored; an empty one is the answer
"nothing found" (which is right on the null scenario, and zero recall elsewhere).

    {
      "scenario_hash": "<64 hex digits>",
      "agent": "my-agent 0.3",
      "gaps": [{"brand": "Kisqali", "region": "northeast", "metric_name": "trx",
                "start_month": "2026-01-01", "end_month": null}],
      "drift": {"window": {"baseline_start": "2025-07-01", "baseline_end": "2025-10-01",
                           "current_start": "2026-04-01", "current_end": "2026-07-01"},
                "flagged": [{"feature": "engagement_score", "onset": "2026-01-01"}]},
      "effects": [{"answer_id": "causal_effect:engagement_score->treatment_initiated",
                   "estimate": 0.041, "ci95": [0.03, 0.052]}]
    }

The models here are the only statement of the format: pydantic validates it (the same strict
style as the scenario: unknown fields, NaN and duplicates refused, every error naming its
field), and schemas/answers.schema.json is generated from them for agents in other languages
(`python -m e2i_synth.tables.answer_key.answers` rewrites it; a test fails when it is stale).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from e2i_synth.core.scenario import known_feature
from e2i_synth.core.vocabulary import (
    BRAND_METRICS,
    BRANDS,
    COMMON_METRICS,
    FEATURES,
    METRIC_NAMES,
    REGIONS,
)

SCHEMA_PATH = Path(__file__).parent / "schemas" / "answers.schema.json"
MAX_ANSWERS_BYTES = 1_000_000
MAX_ITEMS = 1000


class AnswersError(ValueError):
    """Answers that cannot be scored (exit code 2); the message names the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _first_of_month(value: date, field: str) -> date:
    if value.day != 1:
        raise ValueError(f"{field} {value} must be the first day of a month")
    return value


class GapFinding(_Strict):
    """A series the Gap Analyzer finds short of target, from `start_month` (and, if it found
    the series back on target, through `end_month`, the last month short)."""

    brand: str = Field(json_schema_extra={"enum": list(BRANDS)})
    region: str = Field(json_schema_extra={"enum": list(REGIONS)})
    metric_name: str = Field(
        description="a metric_name of business_metrics for the brand",
        json_schema_extra={"enum": list(METRIC_NAMES)},
    )
    start_month: date = Field(description="first month short (YYYY-MM-01)")
    end_month: date | None = Field(None, description="last month short, if it recovered")

    @model_validator(mode="after")
    def _known_series(self) -> GapFinding:
        if self.brand not in BRANDS:
            raise ValueError(f"unknown brand {self.brand!r}; known: {list(BRANDS)}")
        if self.region not in REGIONS:
            raise ValueError(f"unknown region {self.region!r}; known: {list(REGIONS)}")
        allowed = COMMON_METRICS + BRAND_METRICS[self.brand]
        if self.metric_name not in allowed:
            raise ValueError(
                f"unknown metric_name {self.metric_name!r} for {self.brand}; known: {list(allowed)}"
            )
        _first_of_month(self.start_month, "start_month")
        if self.end_month is not None:
            _first_of_month(self.end_month, "end_month")
            if self.end_month < self.start_month:
                raise ValueError("end_month must not be before start_month")
        return self

    @property
    def key(self) -> str:
        return f"{self.brand}/{self.region}/{self.metric_name}"


class Windows(_Strict):
    """The windows the Drift Monitor compared, [start, end) each."""

    baseline_start: date
    baseline_end: date
    current_start: date
    current_end: date


class DriftFinding(_Strict):
    feature: str = Field(
        description="a feature name of the feature store",
        json_schema_extra={"enum": list(FEATURES)},
    )
    onset: date | None = Field(None, description="when the drift began, if estimated")

    @field_validator("feature")
    @classmethod
    def _known_feature(cls, value: str) -> str:
        return known_feature(value)


class DriftReport(_Strict):
    window: Windows | None = Field(None, description="the windows compared (informative)")
    flagged: Annotated[list[DriftFinding], Field(max_length=MAX_ITEMS)] = Field(
        description="every feature found drifted; an empty list: none"
    )

    @field_validator("flagged")
    @classmethod
    def _unique(cls, value: list[DriftFinding]) -> list[DriftFinding]:
        names = [f.feature for f in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features flagged more than once: {duplicates}")
        return value


class EffectEstimate(_Strict):
    answer_id: str = Field(
        description="the effect's answer_id, e.g. causal_effect:engagement_score->"
        "treatment_initiated",
        pattern=r"^causal_effect:[A-Za-z_][A-Za-z0-9_]*->[A-Za-z_][A-Za-z0-9_]*$",
    )
    estimate: float = Field(description="point estimate, on the estimand's scale")
    ci95: tuple[float, float] = Field(description="95% interval [lower, upper]")

    @model_validator(mode="after")
    def _ordered(self) -> EffectEstimate:
        if self.ci95[0] > self.ci95[1]:
            raise ValueError(f"ci95 {list(self.ci95)}: lower bound above upper bound")
        return self


class Answers(_Strict):
    """One agent run's answers for one scenario."""

    scenario_hash: str = Field(
        pattern=r"^[0-9a-f]{64}$", description="sha256 of the scenario the answers are for"
    )
    agent: str | None = Field(None, max_length=200, description="name and version (informative)")
    gaps: Annotated[list[GapFinding], Field(max_length=MAX_ITEMS)] | None = Field(
        None, description="Gap Analyzer: series found short; omit to not be scored"
    )
    drift: DriftReport | None = Field(None, description="Drift Monitor; omit to not be scored")
    effects: Annotated[list[EffectEstimate], Field(max_length=MAX_ITEMS)] | None = Field(
        None, description="causal agent: one estimate per named effect; omit to not be scored"
    )

    @field_validator("gaps")
    @classmethod
    def _unique_series(cls, value: list[GapFinding] | None) -> list[GapFinding] | None:
        keys = [g.key for g in value or []]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"series reported more than once: {duplicates}")
        return value

    @field_validator("effects")
    @classmethod
    def _unique_effects(cls, value: list[EffectEstimate] | None) -> list[EffectEstimate] | None:
        ids = [e.answer_id for e in value or []]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"effects answered more than once: {duplicates}")
        return value


def parse_answers(data: Any, source: str = "answers") -> Answers:
    """Validate answers (a dict, JSON text or bytes); AnswersError names every bad field."""
    if isinstance(data, bytes | str):
        if len(data) > MAX_ANSWERS_BYTES:
            raise AnswersError(f"{source}: larger than {MAX_ANSWERS_BYTES:,} bytes")
        try:
            data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise AnswersError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AnswersError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        return Answers.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors()[:20]:
            where = ".".join(str(p) for p in err["loc"]) or "(answers)"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: {'unknown field' if err['type'] == 'extra_forbidden' else msg}")
        raise AnswersError(f"{source}: invalid answers\n  " + "\n  ".join(lines)) from None


def load_answers(path: str | Path) -> Answers:
    path = Path(path)
    if not path.is_file():
        raise AnswersError(f"answers file not found: {path}")
    with path.open("rb") as file:
        raw = file.read(MAX_ANSWERS_BYTES + 1)
    return parse_answers(raw, str(path))


def json_schema() -> dict:
    schema = Answers.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/e2i-synth/e2i-synth/answers.schema.json",
        "title": "e2i-synth answers",
        **schema,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(schema_text())
    print(f"wrote {SCHEMA_PATH}")
