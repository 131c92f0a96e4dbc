"""Online prediction as plain functions: look an entity's features up in the online store, score it with the
champion (or the challenger, for the entities an A/B experiment gives it), and say with which model and snapshot.

No FastAPI and no Dagster here: the prediction service (``dagster_project/service``) wraps it in HTTP, and the skew
gate calls it directly to compare online answers with batch scoring.

One path with batch scoring. A probability is computed exactly as ``scoring.scores.score_snapshot`` computes it:
the stored features (JSON keeps every bit of a float) go through ``training.model_input`` into the model's
``predict_proba``, so an entity's online probability for a day equals its batch score for that day.

Variants. With a challenger loaded and ``challenger_share`` > 0, an entity is answered by the challenger when a
hash of the experiment's name and the entity's key falls below the share: the assignment is deterministic (the
same entity gets the same model for as long as the experiment keeps its name) and independent of the request.
Shadow: the challenger also scores every entity, for the log only (``Predictor.shadow``, called off the request
path by the service); its answer is never returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sklearn

from dagster_project.defs.ml.aliases import version_by_alias
from dagster_project.defs.ml.registry import load_version
from dagster_project.defs.ml.tracking import CHALLENGER, CHAMPION
from dagster_project.defs.ml.training import churn_probability, fitted_features, model_input
from dagster_project.defs.scoring.scores import RiskBands
from dagster_project.defs.serving.compiled import MAX_ARRAY_ROWS, MAX_ROWS, CompiledModel, compile_model
from dagster_project.online_store import Lookup, OnlineStore
from dagster_project.resources import MlflowResource


class UnknownEntitiesError(LookupError):
    """Entities the online store's snapshot does not hold."""

    def __init__(self, missing: Sequence[str], day: dt.date) -> None:
        self.missing = tuple(missing)
        shown = ", ".join(self.missing[:10]) + (f" and {len(self.missing) - 10} more" if len(self.missing) > 10 else "")
        super().__init__(f"unknown entity {shown}: not in the online store's snapshot of {day}")


class InvalidOverrideError(ValueError):
    """A request-time feature override that names no requested entity or no feature, or has the wrong type."""


class NoModelError(LookupError):
    """No champion is loaded (yet)."""


@dataclass(frozen=True)
class ModelSlot:
    """One loaded model version and what it is: the champion's or the challenger's."""

    role: str  # CHAMPION | CHALLENGER
    name: str
    version: str
    model: Any
    numeric: frozenset[str]  # features the model takes as numbers: an override must be a number there
    features: tuple[str, ...]
    compiled: CompiledModel | None = None  # the fast path for a few rows, proven equal at load (``compiled.py``)

    @classmethod
    def of(cls, role: str, name: str, version: str, model: Any, compiled: CompiledModel | None = None) -> ModelSlot:
        kinds = fitted_features(model)
        return cls(
            role,
            name,
            str(version),
            model,
            frozenset(kinds.numeric),
            tuple(model.feature_names_in_),
            compiled if compiled is not None else compile_model(model),
        )

    def probabilities(
        self, rows: Sequence[Mapping[str, Any]] | EncodedRows, feature_names: Sequence[str]
    ) -> np.ndarray:
        """The positive class's probability per row (feature name -> value, as the online store holds them).

        Up to ``MAX_ARRAY_ROWS`` rows (a request's) take the compiled fast path, equal to the bit; more, or a model
        without a fast path, go through batch scoring's own input path (``model_input``), with scikit-learn's input
        checks skipped: ``model_input`` already typed every column, and for a small batch the checks cost more than
        the prediction. Skipping them changes no number. ``EncodedRows`` share their encoded array between models.
        """
        encoded = rows if isinstance(rows, EncodedRows) else None
        rows = encoded.rows if encoded is not None else rows
        if self.compiled is not None and len(rows) <= MAX_ROWS:
            return self.compiled.walked(rows)
        if self.compiled is not None and len(rows) <= MAX_ARRAY_ROWS:
            return self.compiled.score(encoded.array(self.compiled) if encoded else self.compiled.encode(rows))
        frame = pd.DataFrame(list(rows), columns=list(feature_names))
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return churn_probability(self.model, model_input(frame, self.model))


class EncodedRows:
    """A request's rows and their encoded arrays, one per distinct encoding (``CompiledModel.encoding``): the
    champion and a challenger retrained on the same categories read the same array, so the shadow does not encode
    the rows again."""

    def __init__(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self.rows = rows
        self._arrays: list[tuple[tuple[Any, ...], np.ndarray]] = []

    def array(self, compiled: CompiledModel) -> np.ndarray:
        encoding = compiled.encoding
        for known, X in self._arrays:
            if known == encoding:  # equal tuples: the same object, or a model read alike
                return X
        X = compiled.encode(self.rows)
        self._arrays.append((encoding, X))
        return X


def load_slot(store: MlflowResource, alias: str) -> ModelSlot | None:
    """The version ``alias`` points at, loaded (through the registry's trust check); None if it points nowhere."""
    version = version_by_alias(store, alias)
    if version is None:
        return None
    return ModelSlot.of(alias, store.model_name, str(version.version), load_version(store, version.version))


@dataclass(frozen=True)
class LoadedModels:
    """The models a request is answered with: read once per request, replaced whole by a reload."""

    champion: ModelSlot
    challenger: ModelSlot | None = None
    loaded_at: float = field(default_factory=time.time)

    def versions(self) -> dict[str, str | None]:
        return {
            CHAMPION: self.champion.version,
            CHALLENGER: None if self.challenger is None else self.challenger.version,
        }


@dataclass(frozen=True)
class ServingPolicy:
    """Who answers: the A/B experiment's name and challenger share, and whether the challenger shadows."""

    experiment: str = "champion-vs-challenger"
    challenger_share: float = 0.0
    shadow: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.challenger_share <= 1.0:
            raise ValueError(f"challenger_share must be within [0, 1], got {self.challenger_share}")


def assignment_point(experiment: str, key: str) -> float:
    """Where an entity falls in [0, 1) for an experiment: a hash of both, the same in every process and run."""
    digest = hashlib.blake2b(f"{experiment}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_variant(experiment: str, key: str, challenger_share: float) -> str:
    """``challenger`` for the entities whose point falls below the share, ``champion`` for the others."""
    if challenger_share <= 0.0:
        return CHAMPION
    return CHALLENGER if assignment_point(experiment, key) < challenger_share else CHAMPION


@dataclass(frozen=True)
class Prediction:
    """One entity's answer, as the service returns it: orjson writes the dataclass as is (its fields in order, the
    day as ISO text)."""

    entity: str  # the online store's key of the entity (``online_store.entity_key``)
    probability: float
    risk_band: str
    model_name: str
    model_version: str
    variant: str  # CHAMPION | CHALLENGER
    feature_snapshot_date: dt.date


@dataclass(frozen=True)
class PredictionBatch:
    """The answer to one request, with what it was computed from (for the log and the shadow)."""

    predictions: list[Prediction]
    keys: list[str]
    lookup: Lookup
    overrides: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]  # the features as scored (overrides applied), row for row with ``keys``
    models: LoadedModels
    lookup_seconds: float
    predict_seconds: float
    encoded: EncodedRows  # ``rows`` as the models read them (for the shadow)


@dataclass(frozen=True)
class ShadowScores:
    model_name: str
    model_version: str
    probabilities: np.ndarray  # row for row with the batch's keys


class Predictor:
    """Answers predictions from the online store with the loaded models.

    ``models`` is a callable returning the current ``LoadedModels`` (a model watcher's), read once per request: a
    reload swaps the whole reference, so a request is answered by one consistent set of models.
    """

    def __init__(
        self,
        store: OnlineStore,
        models: Callable[[], LoadedModels | None] | LoadedModels,
        bands: RiskBands,
        policy: ServingPolicy | None = None,
    ) -> None:
        self.store = store
        self._models = models if callable(models) else (lambda: models)
        self.bands = bands
        self.policy = policy or ServingPolicy()

    @property
    def models(self) -> LoadedModels | None:
        return self._models()

    def predict(self, keys: Sequence[str], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> PredictionBatch:
        """Score ``keys`` (``online_store.entity_key`` values), with request-time ``overrides`` of their features.

        Raises ``UnknownEntitiesError`` naming the entities the store does not hold, ``InvalidOverrideError`` for
        an override of no requested entity or no known feature, ``NoModelError`` with no champion loaded, and the
        store's ``OnlineStoreUnavailableError`` / ``NoOnlineSnapshotError``.
        """
        models = self._models()
        if models is None:
            raise NoModelError("no champion model is loaded yet")
        keys = list(keys)
        started = time.perf_counter()
        lookup = self.store.lookup(keys)
        looked_up = time.perf_counter()
        if lookup.missing:
            raise UnknownEntitiesError(lookup.missing, lookup.snapshot.day)
        checked = self._check_overrides(keys, overrides or {}, lookup, models)
        stored = lookup.features
        rows = [{**stored[key], **checked[key]} if key in checked else stored[key] for key in keys]
        names = lookup.snapshot.feature_names
        variants = [self._variant(key, models) for key in keys]
        encoded = EncodedRows(rows)
        probability = np.empty(len(keys), dtype="float64")
        for slot, variant in ((models.champion, CHAMPION), (models.challenger, CHALLENGER)):
            chosen = [i for i, v in enumerate(variants) if v == variant]
            if chosen and slot is not None:
                subset = encoded if len(chosen) == len(keys) else [rows[i] for i in chosen]
                probability[chosen] = slot.probabilities(subset, names)
        bands = self.bands.assign(probability)
        day = lookup.snapshot.day
        predictions = []
        for i, key in enumerate(keys):
            slot = models.champion if variants[i] == CHAMPION else models.challenger
            assert slot is not None
            predictions.append(
                Prediction(
                    entity=key,
                    probability=float(probability[i]),
                    risk_band=str(bands[i]),
                    model_name=slot.name,
                    model_version=slot.version,
                    variant=variants[i],
                    feature_snapshot_date=day,
                )
            )
        return PredictionBatch(
            predictions=predictions,
            keys=keys,
            lookup=lookup,
            overrides=checked,
            rows=rows,
            models=models,
            lookup_seconds=looked_up - started,
            predict_seconds=time.perf_counter() - looked_up,
            encoded=encoded,
        )

    def _variant(self, key: str, models: LoadedModels) -> str:
        if models.challenger is None:
            return CHAMPION
        return assign_variant(self.policy.experiment, key, self.policy.challenger_share)

    def shadow(self, batch: PredictionBatch) -> ShadowScores | None:
        """The challenger's probabilities for every entity of ``batch`` when shadowing is on (None otherwise): the
        entities the challenger answered keep their answer, the others are scored now. Never returned to callers."""
        challenger = batch.models.challenger
        if not self.policy.shadow or challenger is None:
            return None
        probability = np.array([p.probability for p in batch.predictions], dtype="float64")
        chosen = [i for i, p in enumerate(batch.predictions) if p.variant != CHALLENGER]
        if chosen:
            subset = batch.encoded if len(chosen) == len(batch.keys) else [batch.rows[i] for i in chosen]
            probability[chosen] = challenger.probabilities(subset, batch.lookup.snapshot.feature_names)
        return ShadowScores(challenger.name, challenger.version, probability)

    @staticmethod
    def _check_overrides(
        keys: Sequence[str], overrides: Mapping[str, Mapping[str, Any]], lookup: Lookup, models: LoadedModels
    ) -> dict[str, dict[str, Any]]:
        if not overrides:
            return {}
        requested = set(keys)
        known = set(lookup.snapshot.feature_names)
        numeric = models.champion.numeric | (models.challenger.numeric if models.challenger else frozenset())
        checked: dict[str, dict[str, Any]] = {}
        for key, values in overrides.items():
            if key not in requested:
                raise InvalidOverrideError(f"overrides name entity {key!r}, which the request does not ask for")
            for name, value in values.items():
                if name not in known:
                    raise InvalidOverrideError(
                        f"override of entity {key!r} names {name!r}, not a feature of the online store's snapshot "
                        f"(its features: {', '.join(lookup.snapshot.feature_names)})"
                    )
                if name in numeric and value is not None and not _is_number(value):
                    raise InvalidOverrideError(f"override of entity {key!r}: {name!r} is numeric, got {value!r}")
            checked[key] = dict(values)
        return checked


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
