"""Verdicts on the answer key: the pure results the asset checks report, and their rules."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    blocking: bool  # False: recorded and shown as a warning, never stops a run
    description: str


@dataclass(frozen=True)
class Verdict:
    name: str  # the asset check's name, a key of its module's RULES
    passed: bool
    metadata: dict = field(default_factory=dict)
