"""The contract is read from the problem's dbt manifest, and a missing or inconsistent declaration fails when the
definitions load, naming the model and the field."""

import copy
from collections.abc import Callable
from typing import Any

import pytest

from dagster_project.problem import DeclarationError, load_problem, read_contract
from dagster_project.settings import EXAMPLES_DIR, Settings
from spark_jobs.contract import CATEGORICAL, NUMERIC, Contract

MANIFEST = load_problem(Settings()).manifest


def _model(manifest: dict[str, Any], role: str) -> dict[str, Any]:
    return next(n for n in manifest["nodes"].values() if (n["config"].get("meta") or {}).get("role") == role)


def _drop(manifest: dict[str, Any], role: str, field: str) -> None:
    """A meta field the model does not declare (dbt copies a model's config meta to its ``meta``: gone from both)."""
    model = _model(manifest, role)
    model["config"]["meta"].pop(field)
    model.get("meta", {}).pop(field, None)


def _broken(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    manifest = copy.deepcopy(MANIFEST)
    change(manifest)
    return manifest


def test_the_default_problem_declares_its_names_and_kinds() -> None:
    contract = read_contract(MANIFEST, "subscription")
    assert (contract.entity, contract.as_of, contract.label, contract.prediction_time) == (
        ("customer_id",),
        "snapshot_date",
        "churned",
        "prediction_time",
    )
    assert contract.horizon_days == 30 and contract.features_model == "customer_features"
    kinds = {f.name: f.kind for f in contract.features}
    assert kinds["plan"] == CATEGORICAL and kinds["monthly_price"] == NUMERIC
    assert len(contract.features) == 61  # every column the feature model marks feature: true
    assert read_contract(MANIFEST, "subscription", horizon_override=0).horizon_days == 0


def test_the_contract_travels_as_json(tmp_path) -> None:
    contract = read_contract(MANIFEST, "subscription")
    path = tmp_path / "contract.json"
    path.write_text(contract.to_json())
    assert Contract.from_file(path) == contract


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: _drop(m, "labels", "label"), "churn_labels .*meta label is missing"),
        (lambda m: _drop(m, "features", "entity"), "customer_features .*meta entity is missing"),
        (
            lambda m: _model(m, "features")["config"]["meta"].update(top_risk_columns=["no_such_column"]),
            r"customer_features .*\['no_such_column'\].*not among its declared columns",
        ),
        (
            lambda m: _model(m, "labels")["config"]["meta"].update(entity="account"),
            "churn_labels: meta entity .*differs from customer_features",
        ),
        (lambda m: _model(m, "labels")["config"]["meta"].update(horizon_days="a month"), "churn_labels: meta horizon"),
        (
            lambda m: _model(m, "labels")["config"]["meta"].update(role="features"),
            "exactly one dbt model .*role: features",
        ),
        (
            lambda m: _model(m, "features")["columns"]["plan"]["config"]["meta"].update(kind="ordinal"),
            "customer_features: feature plan: kind must be one of",
        ),
        (
            lambda m: _model(m, "features")["config"]["meta"].update(risk_bands={"medium": 0.5, "high": 0.2}),
            "customer_features: risk bands need",
        ),
    ],
    ids=[
        "no_label",
        "no_entity",
        "unknown_top_risk_column",
        "entity_mismatch",
        "bad_horizon",
        "two_feature_models",
        "unknown_kind",
        "bands_out_of_order",
    ],
)
def test_a_bad_declaration_fails_naming_the_model_and_the_field(change: Callable, message: str) -> None:
    with pytest.raises(DeclarationError, match=message):
        read_contract(_broken(change), "subscription")


def test_a_folder_without_models_is_no_problem(tmp_path) -> None:
    with pytest.raises(DeclarationError, match="not a problem folder"):
        load_problem(Settings(problem_dir=tmp_path))
    assert (EXAMPLES_DIR / "subscription" / "models").is_dir()
