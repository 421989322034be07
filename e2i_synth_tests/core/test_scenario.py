"""Scenario validation: every bad value fails with a message naming its field."""

import pytest

from e2i_synth.core.scenario import ScenarioError, build_scenario, load_scenario, parse_scenario


def test_default_scenario_loads_with_presets():
    assert load_scenario().scale == 1.0
    small = load_scenario(scale="small")
    assert (small.scale, small.n_hcps, small.n_patients) == (0.1, 50, 250)
    assert load_scenario(scale=2.5).n_patients == 6250


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"scale": -1}, "scale", "greater than 0"),
        ({"scale": 0}, "scale", "greater than 0"),
        ({"scale": "huge"}, "scale", "valid number"),
        ({"seed": "abc"}, "seed", "valid integer"),
        ({"brands": ["Remibrutinib", "Aspirin"]}, "brands", "unknown brand"),
        ({"brands": []}, "brands", "at least one"),
        ({"regions": ["mars"]}, "regions", "unknown region"),
        ({"start_date": "2026-01-01", "end_date": "2025-01-01"}, "end_date", "after start_date"),
        ({"end_date": "2027-01-01"}, "end_date", "reference_date"),
        ({"causal": {"true_ate": 0.2}}, "causal.true_ate", "outside [0, 1]"),
        ({"causal": {"true_ate": -0.2}}, "causal.true_ate", "outside [0, 1]"),
        ({"causal": {"engagement_noise_sd": 0}}, "causal.engagement_noise_sd", "greater than 0"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"causal": {"tru_ate": 0.1}}, "causal.tru_ate", "unknown field"),
        (
            {
                "drifts": [
                    {
                        "feature": "shoe_size",
                        "kind": "mean_shift",
                        "start": "2026-01-01",
                        "magnitude": 1,
                    }
                ]
            },
            "drifts.0.feature",
            "unknown feature",
        ),
        (
            {
                "drifts": [
                    {
                        "feature": "insurance_tier",
                        "kind": "mean_shift",
                        "start": "2026-01-01",
                        "magnitude": 1,
                    }
                ]
            },
            "drifts.0",
            "numeric feature",
        ),
        (
            {
                "gaps": [
                    {
                        "brand": "Kisqali",
                        "region": "west",
                        "metric_name": "adherence_rate",
                        "start_month": "2026-01-01",
                        "achievement_rate": 0.8,
                    }
                ]
            },
            "gaps.0",
            "unknown metric_name",
        ),
        (
            {
                "gaps": [
                    {
                        "brand": "Kisqali",
                        "region": "west",
                        "metric_name": "trx",
                        "start_month": "2026-01-01",
                        "achievement_rate": 1.5,
                    }
                ]
            },
            "gaps.0.achievement_rate",
            "less than 1",
        ),
    ],
)
def test_bad_values_name_their_field(data, field, words):
    with pytest.raises(ScenarioError) as err:
        build_scenario(data)
    assert field in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [("", "empty"), ("seed: [1, 2\n", "not valid YAML"), ("- just\n- a list\n", "mapping")],
)
def test_unusable_files_are_named(text, words):
    with pytest.raises(ScenarioError, match=words) as err:
        parse_scenario(text, "my.yaml")
    assert "my.yaml" in str(err.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ScenarioError, match="not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_content_hash_follows_content():
    a, b = load_scenario(), load_scenario()
    assert a.content_hash() == b.content_hash()
    assert load_scenario(scale=2).content_hash() != a.content_hash()
