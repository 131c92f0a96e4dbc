"""The ML problem as a team declared it, and the columns the offline store's tables promise their readers.

A team declares its problem once, in its dbt project (the models' and columns' ``meta``): the entity key, the
feature model and each feature's kind, the label model with its prediction time, label and horizon, and what the
top-risk export shows. ``dagster_project/problem.py`` reads that declaration from the dbt manifest into one
``Contract`` when the definitions load, and every layer takes its names from it: no module of the platform names
a column of an example.

Kept apart from the jobs and free of Spark and Dagster, so that every reader (the Spark jobs, training, scoring)
imports it cheaply; the jobs' command lines read it as JSON (``--contract FILE``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NUMERIC = "numeric"
CATEGORICAL = "categorical"
FEATURE_KINDS = (NUMERIC, CATEGORICAL)

# The platform's own columns of a training-set row, beside the team's entity, prediction time and label: the
# snapshot day the label is for, and the snapshot day whose features the row was joined to.
LABEL_SNAPSHOT_DATE = "label_snapshot_date"
FEATURE_SNAPSHOT_DATE = "feature_snapshot_date"

# The lineage of the features: the checksum of the dbt model that produced them (the manifest's ``checksum`` of the
# model node). Written once, by the dbt export, into each file's Parquet metadata; carried under this same key by the
# snapshot commit of that file, the training-set commit and the model's tags. Null where a file lacks it (a
# hand-made export): unknown, never a guess.
DBT_MODEL_CHECKSUM = "dbt_model_checksum"
# On a training-set commit: the distinct checksums of the snapshot days it read, oldest day first (null: a day
# whose file carried none); on a snapshot commit of several days, those of the days it wrote. The commit's
# DBT_MODEL_CHECKSUM is the newest day's.
DBT_MODEL_CHECKSUMS = "dbt_model_checksums"


@dataclass(frozen=True)
class Feature:
    """A model input: a column of the feature model, numeric or categorical (one-hot encoded for training)."""

    name: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature {self.name}: kind must be one of {FEATURE_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Contract:
    """What the platform needs to know of a team's problem, with the names as the team has them."""

    entity: tuple[str, ...]  # the key column(s) of an entity, in the feature and the label model alike
    features_model: str  # one row per entity and as-of day
    as_of: str  # the feature model's day column: the snapshot day D, complete at the end of D
    features: tuple[Feature, ...]
    feature_set_version: str
    labels_model: str  # one row per entity and snapshot day whose label has matured
    label_as_of: str  # the label model's column naming the snapshot day a label is for
    prediction_time: str  # when a prediction for the row is made (the features complete at it may be used)
    label: str  # the target, 0 or 1 (false or true)
    horizon_days: int  # a label of snapshot day D is known on D + horizon (0: known in the extract itself)
    top_risk_columns: tuple[str, ...] = ()  # descriptive columns of the top-risk export
    risk_bands: tuple[float, float] = (0.1, 0.3)  # the probabilities where "medium" and "high" begin
    source: str = field(default="", compare=False)  # where it was declared, for messages

    def __post_init__(self) -> None:
        where = f" ({self.source})" if self.source else ""
        if not self.entity:
            raise ValueError(f"the contract declares no entity column{where}")
        if not self.features:
            raise ValueError(f"the contract declares no feature of {self.features_model}{where}")
        if self.horizon_days < 0:
            raise ValueError(f"{self.labels_model}: horizon_days must be 0 or more, got {self.horizon_days}{where}")
        medium, high = self.risk_bands
        if not 0.0 < medium < high <= 1.0:
            raise ValueError(f"{self.features_model}: risk bands need 0 < medium < high <= 1, got {self.risk_bands}")
        names = [f.name for f in self.features]
        reserved = {*self.entity, self.as_of, self.prediction_time, self.label, LABEL_SNAPSHOT_DATE,
                    FEATURE_SNAPSHOT_DATE}  # fmt: skip
        clash = sorted(set(names) & reserved)
        if clash:
            raise ValueError(f"{self.features_model}: the features {clash} are also key, time or label columns{where}")
        if len(set(names)) != len(names):
            raise ValueError(f"{self.features_model}: a feature is declared twice{where}")

    # --- the names each table is keyed by ---------------------------------------------------------------------

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == NUMERIC]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.kind == CATEGORICAL]

    @property
    def snapshot_keys(self) -> tuple[str, ...]:
        """A feature snapshot row: one per entity and day."""
        return (*self.entity, self.as_of)

    @property
    def label_input_columns(self) -> tuple[str, ...]:
        """A matured label, as the label export holds it."""
        return (*self.entity, self.label_as_of, self.prediction_time, self.label)

    @property
    def training_set_keys(self) -> tuple[str, ...]:
        """A training-set row: its keys, time and label, then the features of the snapshot it was joined to."""
        return (*self.entity, self.prediction_time, LABEL_SNAPSHOT_DATE, self.label, FEATURE_SNAPSHOT_DATE)

    # --- as JSON, for the jobs' command lines ------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Contract:
        values = dict(values)
        values["entity"] = tuple(values["entity"])
        values["features"] = tuple(Feature(**f) for f in values["features"])
        values["top_risk_columns"] = tuple(values.get("top_risk_columns", ()))
        values["risk_bands"] = tuple(values.get("risk_bands", (0.1, 0.3)))
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> Contract:
        return cls.from_dict({**json.loads(Path(path).read_text()), "source": str(path)})
