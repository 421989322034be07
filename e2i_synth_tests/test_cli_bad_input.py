"""Bad input: scenario files and command-line arguments that `e2i-synth materialize` refuses
with exit code 2, naming the field, before anything is written."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from e2i_synth.cli import main
from e2i_synth_tests.conftest import create_database, drop_database

BAD_SCENARIOS = Path(__file__).resolve().parent / "bad_scenarios"


# file in bad_scenarios/ -> words the error must contain (besides the file's path).
BAD_SCENARIO_ERRORS: dict[str, tuple[str, ...]] = {
    "wrong_type_seed.yaml": ("seed", "valid integer"),
    "wrong_type_scale.yaml": ("scale", "valid number"),
    "wrong_type_brands.yaml": ("brands", "valid tuple"),
    "wrong_type_date.yaml": ("start_date", "valid date"),
    "null_seed.yaml": ("seed", "valid integer"),
    "out_of_range_scale.yaml": ("scale", "greater than 0"),
    "out_of_range_probability.yaml": ("causal.baseline_probability", "less than or equal to 1"),
    "out_of_range_noise.yaml": ("causal.engagement_noise_sd", "greater than 0"),
    "out_of_range_gap.yaml": ("gaps.0.achievement_rate", "less than 1"),
    "unknown_brand.yaml": ("brands", "Tylenol"),
    "unknown_region.yaml": ("regions", "mars"),
    "unknown_gap_brand.yaml": ("gaps.0", "Tylenol"),
    "unknown_gap_metric.yaml": ("gaps.0", "unknown metric_name"),
    "unknown_drift_feature.yaml": ("drifts.0.feature", "shoe_size"),
    "drift_kind_mismatch.yaml": ("drifts.0", "categorical feature"),
    "drift_outside_windows.yaml": ("drifts.0.start", "monitoring.baseline_end"),
    "duplicate_drift.yaml": ("drifts", "at most one drift per feature"),
    "unknown_key.yaml": ("colour", "unknown field"),
    "unknown_nested_key.yaml": ("causal.tru_ate", "unknown field"),
    "empty.yaml": ("the file is empty",),
    "comment_only.yaml": ("the file is empty",),
    "malformed.yaml": ("not valid YAML",),
    "malformed_indentation.yaml": ("not valid YAML",),
    "list.yaml": ("expected a mapping", "list"),
    "scalar.yaml": ("expected a mapping", "str"),
    "dates_reversed.yaml": ("end_date", "must be after start_date"),
    "end_after_reference.yaml": ("end_date", "reference_date"),
    "monitoring_reversed.yaml": ("monitoring", "baseline_start < baseline_end"),
    "gap_mid_month.yaml": ("gaps.0", "first day of a month"),
    "overlapping_shocks.yaml": ("gaps.1", "overlaps gaps.0", "refill shocks"),
    "overlapping_start_shocks.yaml": ("gaps.1", "overlaps gaps.0", "start shocks"),
    "start_and_refill_shock.yaml": ("gaps.1", "a start shock", "gaps.0", "a refill shock"),
    "gap_without_world_cause.yaml": ("gaps.0", "os_rate", "cause in the simulated world"),
    "impossible_ate.yaml": ("causal", "true_ate=0.2", "outside [0, 1]"),
    "impossible_negative_ate.yaml": ("causal", "true_ate=-0.2", "outside [0, 1]"),
    # Accepted before the fixes in scenario.py; now refused with these words.
    "duplicate_key.yaml": ("scale", "duplicate"),
    "bool_as_number.yaml": ("scale",),
    "huge_scale.yaml": ("scale",),
    "binary.yaml": ("not valid",),
    # Accepted before issue 12's fixes, then failed after writing (or with a traceback).
    "nan_true_ate.yaml": ("causal.true_ate", "finite number"),
    "inf_noise.yaml": ("causal.engagement_noise_sd", "finite number"),
    "negative_inf_coefficient.yaml": ("causal.severity_on_treatment", "finite number"),
    "nan_drift_magnitude.yaml": ("drifts.0.magnitude", "finite number"),
    "nan_gap_rate.yaml": ("gaps.0.achievement_rate", "finite number"),
    "nan_scale.yaml": ("scale", "finite number"),
    "impossible_date.yaml": ("start_date", "valid date", "day value is outside"),
    "impossible_month.yaml": ("reference_date", "valid date", "month value is outside"),
    "impossible_tagged_date.yaml": ("not valid YAML", "day is out of range"),
    "start_before_partitions.yaml": ("start_date 2023-06-01", "before the partitions' start"),
    "end_after_yesterday.yaml": ("end_date 2099-12-31", "last complete month"),
    "seed_beyond_64_bits.yaml": ("seed", "less than or equal to 9223372036854775807"),
    "seed_beyond_bigint.yaml": ("seed", "less than or equal to 9223372036854775807"),
    "nul_in_name.yaml": ("name", "no NUL"),
    "empty_name.yaml": ("name", "at least 1 character"),
}

# Bad scenario files too big to keep in the repository: name -> (text, words the error must
# contain). The error must also stay short: no echo of the file.
MAX_ERROR_CHARS = 8_000
GENERATED_BAD_SCENARIOS: dict[str, tuple[Callable[[], str], tuple[str, ...]]] = {
    "50 MB of comments": (lambda: "# padding\n" * 5_000_000, ("larger than 1,000,000 bytes",)),
    "5 MB value": (lambda: f"name: {'x' * 5_000_000}\n", ("larger than 1,000,000 bytes",)),
    "900 kB name echoed back": (lambda: f"name: {'x' * 900_000}\n", ("name", "at most 200")),
    "900 kB unknown brand echoed back": (
        lambda: f"brands: [{'y' * 900_000}]\n",
        ("brands", "unknown brand", "(cut)"),
    ),
    "900 kB malformed line echoed back": (
        lambda: f"seed: 1\nname: [{'z' * 900_000}\n",
        ("not valid YAML",),
    ),
    "10,000 unknown keys": (
        lambda: "".join(f"k{i}: 1\n" for i in range(10_000)),
        ("unknown field", "more line(s)"),
    ),
    "deep nesting": (lambda: "a: " + "[" * 100_000 + "]" * 100_000 + "\n", ("not valid",)),
}


@pytest.fixture(scope="module")
def empty_url(server_url: str) -> Iterator[str]:
    """One empty database for the module: each test here is refused before anything runs and
    then checks that the database is still empty, so a test that wrote would fail there."""
    name = f"t_bad_input_{uuid.uuid4().hex[:8]}"
    yield create_database(server_url, name)
    drop_database(server_url, name)


def _public_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return [r[0] for r in rows]


def test_bad_scenarios_folder_and_table_agree():
    assert sorted(p.name for p in BAD_SCENARIOS.iterdir()) == sorted(BAD_SCENARIO_ERRORS)


def _never_runs(*args, **kwargs):
    raise AssertionError("the scenario passed validation: the pipeline was about to run")


@pytest.mark.parametrize("name", list(BAD_SCENARIO_ERRORS))
def test_bad_scenario_file_exits_2_naming_the_field_and_writes_nothing(
    name, empty_url, monkeypatch, capsys
):
    monkeypatch.setenv("E2I_DATABASE_URL", empty_url)
    monkeypatch.setattr(
        "e2i_synth.pipeline.runner.materialize", _never_runs
    )  # a bad file never loads
    path = BAD_SCENARIOS / name
    assert main(["materialize", "--scenario", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and str(path) in err
    for words in BAD_SCENARIO_ERRORS[name]:
        assert words in err, f"{words!r} not in: {err}"
    assert _public_tables(empty_url) == []  # not even migrated


@pytest.mark.parametrize("name", list(GENERATED_BAD_SCENARIOS))
def test_generated_bad_scenario_exits_2_with_a_short_error_and_writes_nothing(
    name, empty_url, monkeypatch, capsys, tmp_path
):
    monkeypatch.setenv("E2I_DATABASE_URL", empty_url)
    monkeypatch.setattr("e2i_synth.pipeline.runner.materialize", _never_runs)
    make_text, words = GENERATED_BAD_SCENARIOS[name]
    path = tmp_path / "scenario.yaml"
    path.write_text(make_text())
    started = time.monotonic()
    assert main(["materialize", "--scenario", str(path)]) == 2
    assert time.monotonic() - started < 30
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("error: ") and str(path) in err
    assert len(err) < MAX_ERROR_CHARS, f"{len(err)} characters"
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert _public_tables(empty_url) == []


# Command-line arguments and environment refused before anything runs:
# name -> (argv after `materialize`, environment, words the error must contain).
BAD_ARGUMENTS: dict[str, tuple[list[str], dict[str, str | None], tuple[str, ...]]] = {
    "--chunk-days -1": (["--chunk-days", "-1"], {}, ("--chunk-days", "not a positive")),
    "--chunk-days 0": (["--chunk-days", "0"], {}, ("--chunk-days", "not a positive")),
    "--chunk-days 1.5": (["--chunk-days", "1.5"], {}, ("--chunk-days", "not a whole number")),
    "--scale nan": (["--scale", "nan"], {}, ("scale", "finite number")),
    "--scale inf": (["--scale", "inf"], {}, ("scale", "finite number")),
    "--scale -inf": (["--scale=-inf"], {}, ("scale", "finite number")),
    "--parallel without DAGSTER_HOME": (
        ["--parallel"],
        {"DAGSTER_HOME": None},
        ("--parallel needs DAGSTER_HOME",),
    ),
    "--parallel --dry-run": (["--parallel", "--dry-run"], {}, ("do not go together",)),
    "relative DAGSTER_HOME": ([], {"DAGSTER_HOME": "relative/home"}, ("DAGSTER_HOME", "absolute")),
    "missing scenario file": (["--scenario", "/nonexistent.yaml"], {}, ("not found",)),
    "a folder as scenario": (["--scenario", "/"], {}, ("not found",)),
    "bad $E2I_SCENARIO": (
        [],
        {"E2I_SCENARIO": str(BAD_SCENARIOS / "nan_true_ate.yaml")},
        ("causal.true_ate", "finite number"),
    ),
}


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_bad_arguments_exit_2_without_a_traceback_and_write_nothing(
    name, empty_url, monkeypatch, capsys
):
    argv, env, words = BAD_ARGUMENTS[name]
    monkeypatch.setenv("E2I_DATABASE_URL", empty_url)
    monkeypatch.setattr("e2i_synth.pipeline.runner.materialize", _never_runs)
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    try:
        code = main(["materialize", *argv])
    except SystemExit as exc:  # argparse refuses with its usage line
        code = exc.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert _public_tables(empty_url) == []
