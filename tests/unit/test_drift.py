"""Drift between reference and current tables, computed by Evidently."""

from __future__ import annotations

import pytest

from driftloop import synthetic
from driftloop.data import infer_spec
from driftloop.drift import DriftConfig, check_drift
from driftloop.errors import ConfigError, DataValidationError


@pytest.fixture(scope="module")
def tables():
    reference = synthetic.generate(3000, seed=1)
    same = synthetic.generate(3000, seed=2)
    shifted = synthetic.generate(3000, seed=3, covariate_shift=0.8)
    spec = infer_spec(reference, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    return reference, same, shifted, spec


def test_same_world_does_not_drift(tables, tmp_path) -> None:
    reference, same, _, spec = tables
    result = check_drift(reference, same, spec, report_path=tmp_path / "r.html")
    assert not result.dataset_drift and result.drift_share < 0.2
    assert "<html" in (tmp_path / "r.html").read_text()[:2000].lower()


def test_shifted_world_drifts_in_the_shifted_features(tables) -> None:
    reference, _, shifted, spec = tables
    result = check_drift(reference, shifted, spec)
    assert result.dataset_drift
    assert {"support_calls", "age", "region", "plan"} <= set(result.drifted_features)
    assert "paperless" not in result.drifted_features  # the generator never shifts it
    assert {f.column for f in result.features} == set(spec.feature_names)


def test_p_value_methods_flag_low_p_values(tables) -> None:
    reference, same, shifted, spec = tables
    config = DriftConfig(num_method="ks", cat_method="chisquare")
    drifted = check_drift(reference, shifted, spec, config)
    support = next(f for f in drifted.features if f.column == "support_calls")
    assert support.threshold == 0.05 and support.score < 0.05 and support.drifted
    calm = check_drift(reference, same, spec, config)
    assert not calm.dataset_drift


def test_bad_inputs_are_clear(tables) -> None:
    reference, same, _, spec = tables
    with pytest.raises(DataValidationError, match="column 'age': missing from the current data"):
        check_drift(reference, same.drop(columns=["age"]), spec)
    with pytest.raises(ConfigError, match="drift share"):
        DriftConfig(drift_share=0)


def test_rollout_policy_and_gateway_url_mistakes_are_config_errors() -> None:
    from driftloop.errors import UnavailableError
    from driftloop.rollout import RolloutPolicy, scrape_gateway

    with pytest.raises(ConfigError, match="at least one step before 100"):
        RolloutPolicy(steps=(100,))
    with pytest.raises(ConfigError, match="must start with http"):
        scrape_gateway("localhost:8080/metrics", "churn")
    # A gateway that does not answer is no mistake in the settings: a failure (exit 1, HTTP 503).
    with pytest.raises(UnavailableError, match="cannot read the gateway's metrics"):
        scrape_gateway("http://127.0.0.1:9/metrics", "churn")


def test_the_verdict_shows_the_numbers_of_evidentlys_own_report(tables) -> None:
    """The verdict calls Evidently's stat tests per column; the HTML report a person opens is Evidently's
    Report. Both must agree on every score, or the report would contradict the trigger."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from driftloop.drift import prepare

    reference, _, shifted, spec = tables
    config = DriftConfig()
    result = check_drift(reference, shifted, spec, config)
    ref, cur = prepare(reference, spec, config), prepare(shifted, spec, config)
    definition = DataDefinition(numerical_columns=spec.names_of("numeric"),
                                categorical_columns=spec.names_of("categorical") + spec.names_of("boolean"))
    snapshot = Report([DataDriftPreset(columns=spec.feature_names, num_method="wasserstein",
                                       cat_method="jensenshannon")]).run(
        current_data=Dataset.from_pandas(cur, data_definition=definition),
        reference_data=Dataset.from_pandas(ref, data_definition=definition))
    reported = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]
                if m.get("config", {}).get("type", "").endswith("ValueDrift")}
    assert set(reported) == set(spec.feature_names)
    for feature in result.features:
        assert feature.score == pytest.approx(reported[feature.column], abs=1e-6), feature.column


def test_the_html_report_keeps_a_hostile_category_as_data(tables, tmp_path) -> None:
    from tests.html_checks import PAYLOAD, assert_payload_is_inert_data

    reference, _, current, spec = tables
    current = current.copy()
    current.loc[current.index[:50], "region"] = PAYLOAD
    path = tmp_path / "report.html"
    check_drift(reference, current, spec, DriftConfig(max_rows=500), path)
    assert_payload_is_inert_data(path.read_text())
