"""The benchmark: answers are validated, scored against ground_truth next to the reference
methods, reproducibly, and refused when they are about another scenario. Pure (ground_truth
from the generators) except the last test, which scores through the CLI on a database."""

import json
from datetime import date

import psycopg
import pytest

from bench.leaderboard import OUT as LEADERBOARD  # e2i_synth/tables/answer_key/leaderboard.json
from bench.leaderboard import rung_scores
from e2i_synth.cli import main
from e2i_synth.core.scenario import ScenarioError, load_scenario
from e2i_synth.db.active_scenario import touch
from e2i_synth.scenarios import bundled_path
from e2i_synth.tables.answer_key.answers import (
    SCHEMA_PATH,
    AnswersError,
    parse_answers,
    schema_text,
)
from e2i_synth.tables.answer_key.sample import generate_ground_truth_frame
from e2i_synth.tables.answer_key.scoring import (
    ScoreRefused,
    empty_answers,
    interval_score,
    perfect_answers,
    reference_answers,
    score,
)

CAUSAL = "causal_effect:engagement_score->treatment_initiated"


@pytest.fixture(scope="module")
def default_truth():
    scenario = load_scenario(bundled_path("default"))
    return scenario, generate_ground_truth_frame(scenario)


def _families(card):
    return card["families"]


def test_perfect_answers_score_perfect(default_truth):
    scenario, truth = default_truth
    card = score(perfect_answers(truth), truth)
    for family in ("gaps", "drift"):
        agent = _families(card)[family]["agent"]
        assert (agent["precision"], agent["recall"], agent["f1"]) == (1.0, 1.0, 1.0)
        assert agent["onset_error_days_mean"] == 0
    (effect,) = _families(card)["effects"]["items"]
    assert effect["agent"]["absolute_error"] == 0 and effect["agent"]["covers"]
    assert effect["agent"]["interval_score"] == 0 and effect["vs_reference"] == "better"
    assert card["scenario"]["scenario_hash"] == scenario.content_hash()


def test_a_feature_downstream_of_a_planted_drift_is_no_false_alarm(default_truth):
    _, truth = default_truth
    perfect = perfect_answers(truth)

    def drift_card(extra: str):
        flagged = [*perfect.drift.flagged, type(perfect.drift.flagged[0])(feature=extra)]
        drift = perfect.drift.model_copy(update={"flagged": flagged})
        return _families(score(perfect.model_copy(update={"drift": drift}), truth))["drift"]

    # outcome_probability moves with the engagement drift in the world: neither hit nor miss ...
    assert drift_card("outcome_probability")["agent"]["precision"] == 1.0
    # ... while a feature no plant moves is a false alarm.
    assert drift_card("age_at_diagnosis")["agent"]["precision"] < 1.0


def test_empty_answers_have_zero_recall(default_truth):
    scenario, truth = default_truth
    card = score(empty_answers(scenario.content_hash()), truth)
    for family in ("gaps", "drift"):
        data = _families(card)[family]
        assert data["agent"]["recall"] == 0 and data["agent"]["f1"] == 0
        assert data["agent"]["precision"] == 1.0  # it claims nothing false
        assert data["vs_reference"] == "worse"
    (effect,) = _families(card)["effects"]["items"]
    assert effect["agent"] is None and effect["vs_reference"] == "worse"


def test_an_unanswered_family_is_not_scored(default_truth):
    scenario, truth = default_truth
    card = score({"scenario_hash": scenario.content_hash()}, truth)
    assert all(not f["scored"] for f in _families(card).values())


def test_the_reference_methods_score_as_the_leaderboard_documents(default_truth):
    scenario, truth = default_truth
    documented = next(
        r for r in json.loads(LEADERBOARD.read_text())["bundled_seed"] if r["rung"] == "default"
    )
    assert documented["scenario_hash"] == scenario.content_hash()
    card = score(reference_answers(truth), truth)
    assert _families(card)["gaps"]["agent"]["f1"] == documented["gaps_f1"]
    assert _families(card)["drift"]["agent"]["f1"] == documented["drift_f1"]
    (effect,) = _families(card)["effects"]["items"]
    assert effect["reference"]["estimate"] == pytest.approx(documented["effect_estimate"])
    assert effect["reference"]["covers"] is documented["effect_covers"]
    # the reference compared with itself is "same" everywhere
    assert {f["vs_reference"] for f in _families(card).values()} == {"same"}


def test_same_answers_same_scorecard(default_truth):
    scenario, truth = default_truth
    answers = {
        "scenario_hash": scenario.content_hash(),
        "agent": "partial",
        "gaps": [
            {
                "brand": "Kisqali",
                "region": "northeast",
                "metric_name": "trx",
                "start_month": "2026-02-01",
            },
            {
                "brand": "Kisqali",
                "region": "south",
                "metric_name": "nrx",
                "start_month": "2025-01-01",
            },
        ],
        "drift": {"flagged": [{"feature": "engagement_score", "onset": "2025-10-13"}]},
        "effects": [{"answer_id": CAUSAL, "estimate": 0.05, "ci95": [0.045, 0.055]}],
    }
    first = score(answers, truth)
    again = score(json.dumps(answers), truth)  # from JSON text: the same card
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    gaps = _families(first)["gaps"]["agent"]
    # missed: the conversion gap and the TRx shock's imprint on Kisqali northeast share
    assert (gaps["true_positives"], gaps["false_positives"], gaps["missed"]) == (1, 1, 2)
    assert gaps["precision"] == 0.5 and gaps["recall"] == pytest.approx(1 / 3)
    assert gaps["onset_error_days"] == {"Kisqali/northeast/trx": 31}
    drift = _families(first)["drift"]["agent"]
    assert drift["recall"] == pytest.approx(1 / 3) and drift["onset_error_days_mean"] == 12
    (effect,) = _families(first)["effects"]["items"]
    assert not effect["agent"]["covers"]  # true 0.04: a narrow interval that misses it
    assert effect["agent"]["interval_score"] == pytest.approx(0.01 + 40 * 0.005)


def test_answers_for_another_scenario_are_refused_naming_both_hashes(default_truth):
    scenario, truth = default_truth
    other = "0" * 64
    with pytest.raises(ScoreRefused) as err:
        score(empty_answers(other), truth)
    assert other in str(err.value) and scenario.content_hash() in str(err.value)


def test_the_null_scenario_rewards_finding_nothing():
    scenario = load_scenario(bundled_path("null"), scale="small")
    truth = generate_ground_truth_frame(scenario)
    card = score(empty_answers(scenario.content_hash()), truth)
    assert _families(card)["gaps"]["agent"]["f1"] == 1.0
    assert _families(card)["drift"]["agent"]["f1"] == 1.0
    alarm = {
        "scenario_hash": scenario.content_hash(),
        "drift": {"flagged": [{"feature": "trx_30d"}]},
    }
    assert _families(score(alarm, truth))["drift"]["agent"]["f1"] == 0.0


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        ("{", "not valid JSON"),
        ([], "expected a JSON object"),
        ({"scenario_hash": "abc"}, "scenario_hash"),
        ({"scenario_hash": "a" * 64, "extra": 1}, "extra: unknown field"),
        (
            {"scenario_hash": "a" * 64, "drift": {"flagged": [{"feature": "nope"}]}},
            "unknown feature",
        ),
        (
            {"scenario_hash": "a" * 64, "drift": {"flagged": [{"feature": "trx_30d"}] * 2}},
            "more than once",
        ),
        (
            {
                "scenario_hash": "a" * 64,
                "gaps": [
                    {
                        "brand": "Kisqali",
                        "region": "west",
                        "metric_name": "trx",
                        "start_month": "2026-01-15",
                    }
                ],
            },
            "first day of a month",
        ),
        (
            {
                "scenario_hash": "a" * 64,
                "effects": [{"answer_id": CAUSAL, "estimate": 0.1, "ci95": [0.2, 0.1]}],
            },
            "lower bound above upper bound",
        ),
        (
            '{"scenario_hash": "'
            + "a" * 64
            + '", "effects": [{"answer_id": "'
            + CAUSAL
            + '", "estimate": NaN, "ci95": [0, 1]}]}',
            "effects.0.estimate",
        ),
    ],
)
def test_bad_answers_are_refused_naming_the_field(answers, message):
    with pytest.raises(AnswersError, match=message):
        parse_answers(answers if isinstance(answers, str | list) else json.dumps(answers))


def test_the_json_schema_file_is_generated_from_the_models():
    assert SCHEMA_PATH.read_text() == schema_text(), (
        "stale: run .venv/bin/python -m e2i_synth.tables.answer_key.answers"
    )


def test_interval_score_rewards_narrow_covering_intervals():
    assert interval_score(0.0, 0.1, 0.05) == pytest.approx(0.1)
    assert interval_score(0.0, 0.1, 0.2) == pytest.approx(0.1 + 40 * 0.1)
    assert interval_score(0.04, 0.06, 0.05) < interval_score(0.0, 0.1, 0.05)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {
                "drifts": [
                    {
                        "feature": "engagement_score",
                        "kind": "mean_shift",
                        "start": "2026-01-01",
                        "magnitude": 0.5,
                        "ramp_days": 400,
                    }
                ]
            },
            "ramp must end by",
        ),
        (
            {
                "gaps": [
                    {
                        "brand": "Kisqali",
                        "region": "west",
                        "metric_name": "trx",
                        "start_month": "2026-01-01",
                        "end_month": "2025-06-01",
                        "achievement_rate": 0.8,
                    }
                ]
            },
            "must not be before start_month",
        ),
        ({"seasonal": [{"feature": "trx_30d", "amplitude": 1.0}]}, "same calendar days"),
        ({"seasonal": [{"feature": "disease_severity", "amplitude": 1.0}]}, "cannot be seasonal"),
    ],
)
def test_new_plant_fields_are_validated_with_named_errors(change, message):
    from e2i_synth.core.scenario import build_scenario

    with pytest.raises(ScenarioError, match=message):
        build_scenario(change)


def test_a_ramp_reaches_part_of_its_size_in_between():
    from e2i_synth.core.scenario import DriftSpec

    spec = DriftSpec(
        feature="engagement_score",
        kind="mean_shift",
        start=date(2026, 1, 1),
        magnitude=1.0,
        ramp_days=100,
    )
    assert list(spec.fraction([-1, 0, 50, 100, 200])) == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_the_leaderboard_is_reproducible_for_a_rung():
    documented = {r["rung"]: r for r in json.loads(LEADERBOARD.read_text())["bundled_seed"]}
    # Equal up to the last bits of a float: BLAS and numpy builds differ between Python 3.11
    # and 3.12 in the 16th digit of the OLS estimate.
    scores, expected = rung_scores("recovering_gap"), documented["recovering_gap"]
    assert scores.keys() == expected.keys()
    for key, value in scores.items():
        close = isinstance(value, float) and value == pytest.approx(expected[key], rel=1e-9)
        assert close or value == expected[key], key


def test_score_command_on_a_database(monkeypatch, db_url, tmp_path, capsys):
    """The CLI path: the active scenario and ground_truth read from PostgreSQL (written here
    from the pure generator, as the pipeline would), perfect answers scored (exit 0), answers
    for another scenario and bad input refused (exit 2)."""
    scenario = load_scenario(bundled_path("default"), scale="small")
    truth = generate_ground_truth_frame(scenario)
    with psycopg.connect(db_url) as conn:
        touch(conn, scenario.content_hash(), scenario.to_yaml())
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ground_truth VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
                truth.select(
                    "answer_id",
                    "kind",
                    "subject",
                    "planted",
                    "expected_value",
                    "details",
                    "scenario_hash",
                    "seed",
                    "package_version",
                ).rows(),
            )
    monkeypatch.setenv("E2I_DATABASE_URL", db_url)
    perfect = tmp_path / "perfect.json"
    perfect.write_text(perfect_answers(truth).model_dump_json())
    assert main(["score", str(perfect), "--json"]) == 0
    card = json.loads(capsys.readouterr().out)
    assert card["families"]["gaps"]["agent"]["f1"] == 1.0
    assert main(["score", str(perfect)]) == 0
    assert "vs reference" in capsys.readouterr().out

    other = tmp_path / "other.json"
    other.write_text(json.dumps({"scenario_hash": "f" * 64, "gaps": []}))
    assert main(["score", str(other), "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["exit_code"] == 2
    assert "f" * 64 in captured.err and scenario.content_hash() in captured.err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["score", str(bad)]) == 2
    # The Dagster check on the same database: the reference scorecard, compared with the
    # leaderboard (which documents the bundled rungs at their own scale, not at small).
    from e2i_synth.db.resource import Database
    from e2i_synth.tables.answer_key.checks import reference_scorecard

    result = reference_scorecard(database=Database(url=db_url, migrate_on_setup=False))
    assert result.passed and result.metadata["documented"].value is False
    assert "gaps_f1" in result.metadata["scorecard"].value
