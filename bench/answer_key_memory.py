"""Peak memory of the answer key (the ground_truth step's work) on the pure generators' tables.

    python -m bench.answer_key_memory prepare DIR --scale 1000 [--scenario default]
    python -m bench.answer_key_memory run DIR

`prepare` writes the tables the ground_truth asset reads (pure generators, no database; only
the columns the asset reads, in key order as the IO manager reads them) to Parquet in DIR.
`run` reads them back in a fresh process, as the asset receives them, then computes what the
asset computes (answer_key.models.model_answers, then generate_ground_truth) and prints the
process's resident memory before, its peak during each step (Linux: VmHWM, reset through
/proc/self/clear_refs before each step) and a sha256 of the ground_truth frame (CSV bytes) and
of the inputs, to check that a change leaves the answer key byte-identical.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

import polars as pl


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _inputs(scenario):
    from e2i_synth.tables.activity import ml_predictions
    from e2i_synth.tables.answer_key import causal, drift, gaps
    from e2i_synth.tables.answer_key.sample import generate_answer_key_tables
    from e2i_synth.tables.entities.hcp_profiles import generate_hcp_profiles

    tables = generate_answer_key_tables(scenario)
    journeys = tuple(dict.fromkeys(causal.COLUMNS + ml_predictions.PATIENT_COLUMNS))
    return {
        "hcp_profiles": generate_hcp_profiles(scenario)
        .select(ml_predictions.HCP_COLUMNS)
        .sort("hcp_id"),
        "patient_journeys": tables.patient_journeys.select(journeys).sort("patient_id"),
        "features": tables.features.select(drift.FEATURE_COLUMNS).sort("feature_id"),
        "feature_values": tables.feature_values.select(drift.VALUE_COLUMNS).sort(
            "feature_id", "event_timestamp"
        ),
        "business_metrics": tables.business_metrics.select(gaps.COLUMNS).sort("metric_id"),
    }


def prepare(folder: Path, scale: str, scenario_name: str) -> None:
    import e2i_synth.scenarios
    from e2i_synth.core.scenario import load_scenario

    folder.mkdir(parents=True, exist_ok=True)
    path = Path(e2i_synth.scenarios.__file__).parent / f"{scenario_name}.yaml"
    scenario = load_scenario(path, scale=_scale(scale))
    (folder / "scenario.yaml").write_text(path.read_text())
    (folder / "scale").write_text(scale)
    for name, frame in _inputs(scenario).items():
        frame.write_parquet(folder / f"{name}.parquet")
        print(f"{name}: {frame.height:,} rows")


def _scale(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text  # a preset: "full", "small", ...


def _digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()


def run(folder: Path, with_input_digests: bool) -> None:
    import e2i_synth
    from e2i_synth.core.scenario import load_scenario
    from e2i_synth.tables.answer_key.ground_truth import generate_ground_truth
    from e2i_synth.tables.answer_key.models import model_answers

    print(f"e2i_synth from {Path(e2i_synth.__file__).parent.parent}")
    scenario = load_scenario(folder / "scenario.yaml", scale=_scale((folder / "scale").read_text()))
    names = ("hcp_profiles", "patient_journeys", "features", "feature_values", "business_metrics")
    inputs = {name: pl.read_parquet(folder / f"{name}.parquet") for name in names}
    if with_input_digests:
        for name, frame in inputs.items():
            print(f"input {name}: {frame.height:,} rows sha256 {_digest(frame)}")
    gc.collect()
    print(f"inputs read: RSS {_status('VmRSS'):,.0f} MB")
    started = time.perf_counter()
    _reset_peak()
    models = model_answers(scenario, inputs["hcp_profiles"], inputs["patient_journeys"])
    gc.collect()
    print(
        f"model_answers: peak {_status('VmHWM'):,.0f} MB, after {_status('VmRSS'):,.0f} MB "
        f"({time.perf_counter() - started:.1f} s)"
    )
    _reset_peak()
    truth = generate_ground_truth(
        scenario,
        inputs["patient_journeys"],
        inputs["features"],
        inputs["feature_values"],
        inputs["business_metrics"],
        package_version="bench",
        models=models,
    )
    print(
        f"generate_ground_truth: peak {_status('VmHWM'):,.0f} MB, after "
        f"{_status('VmRSS'):,.0f} MB ({time.perf_counter() - started:.1f} s in all)"
    )
    print(f"ground_truth: {truth.height} rows sha256 {_digest(truth)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("folder", type=Path)
    p.add_argument("--scale", default="1000")
    p.add_argument("--scenario", default="default")
    r = sub.add_parser("run")
    r.add_argument("folder", type=Path)
    r.add_argument("--input-digests", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.folder, args.scale, args.scenario)
    else:
        run(args.folder, args.input_digests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
