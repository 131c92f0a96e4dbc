"""The champion as scoring and monitoring see it: a thin adapter over the ML domain's registry helpers.

Scoring and monitoring depend on the registry through this module only, so a change of the ML side's helpers
is absorbed in one place.
"""

from __future__ import annotations

from dagster_project.defs.ml import registry
from dagster_project.defs.ml.registry import ChampionModel, NoChampionError
from dagster_project.resources import MlflowResource

__all__ = ["ChampionModel", "NoChampionError", "load_champion", "validation_roc_auc"]


def load_champion(store: MlflowResource) -> ChampionModel:
    """The version behind the ``champion`` alias, loaded once (so the version recorded is the one that scored).

    Raises ``NoChampionError`` with the way out: materialize ``ml/churn_model`` and ``ml/champion_model`` first.
    """
    try:
        return registry.load_champion(store)
    except NoChampionError as error:
        raise NoChampionError(
            f"no model version has the alias 'champion', so there is nothing to score with. {error}. "
            "In the UI: materialize ml/churn_model and ml/champion_model (or launch the `retrain` job)."
        ) from error


def validation_roc_auc(store: MlflowResource, version: str) -> float | None:
    """The validation ROC AUC a registered version was trained to (its ``metric.roc_auc`` tag), if recorded."""
    tags = store.client().get_model_version(store.model_name, str(version)).tags
    value = tags.get("metric.roc_auc")
    return None if value is None else float(value)
