"""The skew gate: proof that the online path serves what the batch path computed, for a sample of entities.

Training-serving skew is the classic silent failure of real-time ML: the online features are computed or typed a
little differently, and the model answers differently online than it was validated offline, with no error anywhere.
Here the online store is published from the offline store's own snapshot, and the service scores through batch
scoring's input path; this check proves both, on the day the store holds:

* **features**: for a seeded sample of entities, every feature in the online store equals the offline snapshot's
  value exactly (floats to the bit, missing as missing), and the store holds exactly the snapshot's entities;
* **probabilities**: the prediction service's answer for those entities (``Predictor``, the code behind
  ``POST /predict``), with the model version that made the day's batch scores, equals their batch score to 1e-9.
"""

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from dagster_project import asset_keys
from dagster_project.defs.ml.registry import load_version
from dagster_project.defs.ml.tracking import CHAMPION
from dagster_project.defs.scoring import scores as scoring
from dagster_project.defs.serving.predictor import LoadedModels, ModelSlot, Predictor
from dagster_project.online_store import OnlineStore, plain_value, snapshot_keys
from dagster_project.resources import ContractResource, LakeResource, MlflowResource, OnlineStoreResource
from spark_jobs.contract import Contract

SKEW_CHECK = "online_matches_offline"
PROBABILITY_TOLERANCE = 1e-9
SHOWN_MISMATCHES = 10


class SkewGateConfig(dg.Config):
    sample_size: int = Field(500, ge=1, description="entities compared (seeded by the day); all if fewer")


@dataclass
class SkewReport:
    day: dt.date
    entities_offline: int = 0
    entities_online: int = 0
    missing_online: int = 0  # in the snapshot, not in the store
    unexpected_online: int = 0  # in the store, not in the snapshot
    compared_entities: int = 0
    compared_values: int = 0
    feature_mismatches: list[tuple[str, str, Any, Any]] = field(
        default_factory=list
    )  # entity, feature, online, offline
    scored_version: str | None = None
    compared_probabilities: int = 0
    max_probability_difference: float | None = None
    probability_mismatches: list[tuple[str, float, float]] = field(default_factory=list)  # entity, online, batch

    @property
    def passed(self) -> bool:
        return (
            self.missing_online == 0
            and self.unexpected_online == 0
            and not self.feature_mismatches
            and not self.probability_mismatches
        )


def same_value(online: Any, offline: Any) -> bool:
    """Exactly equal as the store holds values: missing equals missing; numbers by value and to the bit."""
    if online is None or offline is None:
        return online is None and offline is None
    if isinstance(online, float) or isinstance(offline, float):
        return (
            isinstance(online, int | float)
            and isinstance(offline, int | float)
            and float(online).hex() == float(offline).hex()
        )
    return online == offline


def sample_entities(frame: pd.DataFrame, contract: Contract, size: int, day: dt.date) -> pd.DataFrame:
    """A sample of the snapshot's rows, seeded by the day (the same sample when the check runs again)."""
    if len(frame) <= size:
        return frame
    return frame.sample(n=size, random_state=int(day.strftime("%Y%m%d")))


def compare_features(
    report: SkewReport, store: OnlineStore, snapshot: pd.DataFrame, contract: Contract, sample_size: int
) -> list[str]:
    """Fill the feature side of ``report``; returns the sampled entities' keys."""
    keys = snapshot_keys(snapshot, contract.entity, report.day)
    online_keys = set(store.entity_keys())
    offline_keys = set(keys)
    report.entities_offline, report.entities_online = len(offline_keys), len(online_keys)
    report.missing_online = len(offline_keys - online_keys)
    report.unexpected_online = len(online_keys - offline_keys)

    sample = sample_entities(snapshot.assign(_key=keys), contract, sample_size, report.day)
    present = sample[sample["_key"].isin(online_keys)]
    lookup = store.lookup(present["_key"].tolist())
    names = list(contract.feature_names)
    for row in present[["_key", *names]].itertuples(index=False, name=None):
        key, values = row[0], row[1:]
        stored = lookup.features[key]
        for name, offline in zip(names, values, strict=True):
            report.compared_values += 1
            online = stored.get(name)
            if not same_value(online, plain_value(offline)):
                report.feature_mismatches.append((key, name, online, plain_value(offline)))
    report.compared_entities = len(present)
    return present["_key"].tolist()


def compare_probabilities(
    report: SkewReport,
    store: OnlineStore,
    keys: list[str],
    scores: pd.DataFrame,
    model: ModelSlot,
    contract: Contract,
) -> None:
    """Fill the probability side of ``report``: the service's answers against the day's batch scores."""
    batch_keys = snapshot_keys(scores, contract.entity, report.day)
    batch = dict(zip(batch_keys, scores[scoring.PROBABILITY].to_numpy(), strict=True))
    wanted = [k for k in keys if k in batch]
    if not wanted:
        return
    predictor = Predictor(store, LoadedModels(champion=model), scoring.RiskBands(*contract.risk_bands))
    answers = predictor.predict(wanted).predictions
    differences = np.array([abs(a.probability - batch[a.entity]) for a in answers])
    report.compared_probabilities = len(answers)
    report.max_probability_difference = float(differences.max())
    report.probability_mismatches = [
        (a.entity, a.probability, float(batch[a.entity]))
        for a, d in zip(answers, differences, strict=True)
        if not d <= PROBABILITY_TOLERANCE
    ]


def _shown(values: list[tuple]) -> str:
    lines = [" | ".join(map(repr, v)) for v in values[:SHOWN_MISMATCHES]]
    more = len(values) - SHOWN_MISMATCHES
    return "\n".join(lines + ([f"... {more} more"] if more > 0 else []))


def build_skew_gate() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset_keys.ONLINE_STORE,
        name=SKEW_CHECK,
        # After the day's batch scores exist: the probabilities are compared with them.
        additional_deps=[asset_keys.BATCH_SCORES],
        description=(
            "The online path serves what the batch path computed, on the day the online store holds: for a seeded "
            "sample of entities every stored feature equals the offline snapshot's exactly and the store holds "
            "exactly the snapshot's entities; the prediction service's probability (its own code, with the model "
            "version that made the day's batch scores) equals the batch score to 1e-9. Metadata names the "
            "mismatching entities and features."
        ),
    )
    def online_matches_offline(
        config: SkewGateConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
        contract: ContractResource,
        online_store: OnlineStoreResource,
    ) -> dg.AssetCheckResult:
        names = contract.contract
        store = online_store.open()
        try:
            current = store.current()
            if current is None:
                return dg.AssetCheckResult(
                    passed=False, description="the online store holds no snapshot: nothing was published"
                )
            report = SkewReport(day=current.day)
            snapshot = scoring.read_feature_snapshot(lake.root, current.day, names, columns=names.feature_names)
            keys = compare_features(report, store, snapshot, names, config.sample_size)
            scores = scoring.read_scores(lake.root, current.day, names)
            if not scores.empty:
                report.scored_version = str(scores["model_version"].iloc[0])
                model = ModelSlot.of(
                    CHAMPION, mlflow.model_name, report.scored_version, load_version(mlflow, report.scored_version)
                )
                compare_probabilities(report, store, keys, scores, model, names)
        finally:
            store.close()
        metadata: dict[str, object] = {
            "snapshot_day": report.day.isoformat(),
            "delta_table_version": current.delta_version,
            "entities_offline": report.entities_offline,
            "entities_online": report.entities_online,
            "missing_online": report.missing_online,
            "unexpected_online": report.unexpected_online,
            "compared_entities": report.compared_entities,
            "compared_values": report.compared_values,
            "feature_mismatches": len(report.feature_mismatches),
            "compared_probabilities": report.compared_probabilities,
            "probability_mismatches": len(report.probability_mismatches),
            "batch_scored_by_version": report.scored_version or "not scored yet",
        }
        if report.max_probability_difference is not None:
            metadata["max_probability_difference"] = report.max_probability_difference
        if report.feature_mismatches:
            metadata["feature_mismatch_examples"] = dg.MetadataValue.text(
                "entity | feature | online | offline\n" + _shown(report.feature_mismatches)
            )
        if report.probability_mismatches:
            metadata["probability_mismatch_examples"] = dg.MetadataValue.text(
                "entity | online | batch\n" + _shown(report.probability_mismatches)
            )
        verdict = (
            f"{report.compared_values} feature values of {report.compared_entities} entities and "
            f"{report.compared_probabilities} probabilities compared on {report.day}: "
            f"{len(report.feature_mismatches)} feature mismatches, {len(report.probability_mismatches)} probability "
            f"mismatches, {report.missing_online} entities missing online, {report.unexpected_online} unexpected"
        )
        if math.isfinite(report.max_probability_difference or 0.0) is False:
            verdict += " (a probability is not finite)"
        return dg.AssetCheckResult(
            passed=report.passed, severity=dg.AssetCheckSeverity.ERROR, description=verdict, metadata=metadata
        )

    return online_matches_offline
