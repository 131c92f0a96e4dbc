"""The champion as scoring and monitoring see it: a thin adapter over the ML domain's registry helpers.

Scoring and monitoring depend on the registry through this module only, so a change of the ML side's helpers
is absorbed in one place.
"""

from __future__ import annotations

from dagster_project.defs.ml import registry
from dagster_project.defs.ml.registry import ChampionModel, NoChampionError, ValidationAuc
from dagster_project.resources import MlflowResource

__all__ = ["ChampionModel", "NoChampionError", "ValidationAuc", "load_challenger", "load_champion", "validation_auc"]


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


def load_challenger(store: MlflowResource, champion: ChampionModel) -> ChampionModel | None:
    """The ``challenger`` to score in the shadow of ``champion``; None when there is none, or it is the champion."""
    return registry.load_challenger(store, champion.version)


def validation_auc(store: MlflowResource, version: str) -> ValidationAuc | None:
    """The validation ROC AUC a registered version was trained to (its ``metric.roc_auc`` tag), with the counts it
    was measured on when the version recorded them; None if it records no AUC."""
    return registry.validation_auc(store, version)
