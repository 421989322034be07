"""The bundled scenarios: a difficulty ladder, easiest first. Each file opens with a comment
saying what it tests (`e2i-synth scenarios` lists them)."""

from dataclasses import dataclass
from pathlib import Path

FOLDER = Path(__file__).parent

# Easiest first; the null scenario last (its right answer is "nothing").
LADDER = (
    "easy",
    "strong",
    "default",
    "weak_effect",
    "confounded",
    "gradual_drift",
    "seasonal",
    "recovering_gap",
    "null",
)


@dataclass(frozen=True)
class Bundled:
    name: str
    path: Path
    description: str  # the file's opening comment, as one paragraph


def _description(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def bundled() -> list[Bundled]:
    """Every bundled scenario, in ladder order."""
    return [Bundled(n, FOLDER / f"{n}.yaml", _description(FOLDER / f"{n}.yaml")) for n in LADDER]


def bundled_path(name: str) -> Path:
    if name not in LADDER:
        raise KeyError(f"no bundled scenario {name!r}; bundled: {list(LADDER)}")
    return FOLDER / f"{name}.yaml"
