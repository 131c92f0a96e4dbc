"""Nightly batch scoring as plain functions: read a day's feature snapshot, score it, store the scores.

No Dagster here: the asset, the benchmark and the tests call the same functions.

Storage. The scores are a Delta table, ``<lake>/scoring/batch_scores``, keyed by the contract's entity and
partitioned by its day column, and
written with delta-rs (the ``deltalake`` package), not Spark: scoring is a single-node pandas/scikit-learn step
whose input already sits in memory, so a JVM would add its start-up time and a pandas-to-Spark copy for nothing,
while delta-rs writes the same Delta protocol that Spark, DuckDB and Trino read. Each day is written with an
overwrite restricted by a predicate on its partition (Delta's ``replaceWhere``): re-scoring a day replaces that
day's rows in one atomic commit and leaves every other day untouched.

The top-risk list, one CSV per day for the business, sits beside it (``dagster_project/lake.py`` has the layout).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from dagster_project import faults, lake
from dagster_project.defs.ml.training import churn_probability, model_input
from spark_jobs.contract import Contract
from spark_jobs.object_store import Location, is_uri

# Where ``read_feature_snapshot`` records the offline store's Delta table version it read (``frame.attrs``).
SNAPSHOT_VERSION = "delta_table_version"
# Rows predicted at a time (see score_snapshot).
BATCH_ROWS = 200_000
# Checkpoint the Delta log every N commits so readers replay a short log, not one JSON file per night.
CHECKPOINT_EVERY = 25

# The platform's columns of a score, after the contract's entity key and day column.
PROBABILITY = "churn_probability"
SCORE_FIELDS = [
    pa.field(PROBABILITY, pa.float64(), nullable=False),
    pa.field("risk_band", pa.string(), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    # UTC, microseconds: Spark reads Delta `timestamp` as microseconds and cannot read nanoseconds.
    pa.field("scored_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
# Batch shadow: the challenger's probability for the same row, when a challenger other than the champion exists
# (null otherwise). Never used for a decision about an entity; the matured-label comparison of the two models
# (monitoring/model_performance) reads both from the same rows.
CHALLENGER_PROBABILITY = "challenger_probability"
CHALLENGER_VERSION = "challenger_version"
SHADOW_FIELDS = [
    pa.field(CHALLENGER_PROBABILITY, pa.float64(), nullable=True),
    pa.field(CHALLENGER_VERSION, pa.string(), nullable=True),
]


def scores_schema(contract: Contract, entity_types: dict[str, pa.DataType] | None = None) -> pa.Schema:
    """The scores table: the entity key (typed as the snapshot has it; text when unknown), the day, the scores."""
    types = entity_types or {}
    return pa.schema(
        [
            *(pa.field(c, types.get(c, pa.string()), nullable=False) for c in contract.entity),
            pa.field(contract.as_of, pa.date32(), nullable=False),
            *SCORE_FIELDS,
            *SHADOW_FIELDS,
        ]
    )


def entity_index(frame: pd.DataFrame, contract: Contract) -> pd.MultiIndex:
    """The entity key of each row, one or more columns alike: what duplicates and set differences compare."""
    return pd.MultiIndex.from_frame(frame[list(contract.entity)])


class NoFeatureSnapshotError(LookupError):
    """The offline store holds no feature snapshot for the requested day."""


@dataclass(frozen=True)
class RiskBands:
    """Cut points on the probability: ``low`` below ``medium``, ``high`` from ``high`` up (the contract declares
    them, ``risk_bands`` of the feature model's meta).

    Fixed probabilities, not daily quantiles: a quantile band would put 10% of entities in ``high`` every day,
    hiding exactly the rise in risk that a retention team needs to see.
    """

    medium: float
    high: float

    def __post_init__(self) -> None:
        if not 0.0 < self.medium < self.high <= 1.0:
            raise ValueError(f"risk bands need 0 < medium < high <= 1, got medium={self.medium}, high={self.high}")

    def assign(self, probability: np.ndarray) -> np.ndarray:
        """The band of each probability, as strings."""
        return np.array(["low", "medium", "high"], dtype=object)[
            np.searchsorted([self.medium, self.high], probability, side="right")
        ]


def _partition_filter(date: dt.date, day_column: str) -> list[tuple[str, str, dt.date]]:
    """The day's partition, as a filter delta-rs prunes files with (typed: the column is a date)."""
    return [(day_column, "=", date)]


def read_feature_snapshot(
    lake_root: Location,
    date: dt.date,
    contract: Contract,
    columns: list[str] | None = None,
    optional: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The features of every entity on ``date``, from the Delta offline store (latest table version).

    Only ``columns`` (plus the keys, plus those of ``optional`` the table has) are read when given: the scoring
    step needs the model's features only. The table version read is ``frame.attrs[SNAPSHOT_VERSION]``.
    """
    from deltalake.exceptions import TableNotFoundError

    path = lake.offline_store(lake_root).feature_snapshots
    try:
        table = lake.delta_table(path)
    except TableNotFoundError as error:
        raise NoFeatureSnapshotError(
            f"no offline store at {path}: materialize offline_store/feature_snapshots for {date} first"
        ) from error
    wanted = None
    if columns is not None:
        available = set(pa.schema(table.schema().to_arrow()).names)
        keys = contract.snapshot_keys
        missing = [c for c in [*keys, *columns] if c not in available]
        if missing:
            raise KeyError(
                f"the offline store {path} lacks the columns {missing}: the features changed since the champion "
                "was trained; retrain it (the `retrain` job)"
            )
        wanted = list(dict.fromkeys([*keys, *columns, *(c for c in optional if c in available)]))
    arrow = lake.delta_to_arrow(table, path, filters=_partition_filter(date, contract.as_of), columns=wanted)
    # Each Arrow column is released as soon as it is converted: the day is never held twice in full.
    frame = arrow.to_pandas(self_destruct=True, split_blocks=True)
    del arrow
    if frame.empty:
        raise NoFeatureSnapshotError(
            f"the offline store {path} has no snapshot for {date}: materialize offline_store/feature_snapshots "
            f"for partition {date} first"
        )
    # The partition filter leaves one day; a constant column is far cheaper than converting a million dates.
    frame[contract.as_of] = date
    frame.attrs[SNAPSHOT_VERSION] = table.version()
    return frame


def model_feature_names(model: Any) -> list[str]:
    """The columns ``model`` was fitted on, in its order."""
    columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
    if not columns:
        raise TypeError("the model does not record its input columns (feature_names_in_): fit it on a DataFrame")
    return columns


def score_snapshot(
    model: Any,
    features: pd.DataFrame,
    contract: Contract,
    *,
    model_name: str,
    model_version: str,
    bands: RiskBands | None = None,
    scored_at: dt.datetime | None = None,
    batch_rows: int = BATCH_ROWS,
    shadow: tuple[Any, str] | None = None,
) -> pd.DataFrame:
    """Score one day's feature snapshot: one row per entity with its probability and risk band.

    ``features`` holds the entity key, the day column (a single day) and at least the model's feature columns
    (and the shadow model's, when ``shadow`` names one: ``(model, version)``, scored beside the champion).
    Returns the columns of ``scores_schema``, row for row with ``features``.
    """
    missing = [c for c in contract.snapshot_keys if c not in features.columns]
    if missing:
        raise KeyError(f"the feature snapshot lacks the key columns {missing}")
    days = pd.unique(features[contract.as_of])
    if len(days) != 1:
        raise ValueError(f"score one snapshot day at a time; got {len(days)} days: {sorted(map(str, days))[:5]}")
    duplicated = entity_index(features, contract).duplicated()
    if duplicated.any():
        raise ValueError(
            f"the snapshot of {days[0]} has {int(duplicated.sum())} duplicated {'/'.join(contract.entity)} values, "
            f"e.g. {features.loc[duplicated, list(contract.entity)].head(3).values.tolist()}: the offline store must "
            "hold one row per entity and day"
        )
    # Predicted in batches: the model's input and its encoded copy exist for one batch at a time, so memory
    # stays bounded for any number of entities while each batch is large enough to keep every core busy.
    probability = np.empty(len(features), dtype="float64")
    shadowed = np.full(len(features), np.nan) if shadow is not None else None
    for start in range(0, len(features), batch_rows):
        batch = features.iloc[start : start + batch_rows]
        probability[start : start + len(batch)] = churn_probability(model, model_input(batch, model))
        if shadow is not None:
            shadowed[start : start + len(batch)] = churn_probability(shadow[0], model_input(batch, shadow[0]))
    stamp = pd.Timestamp(scored_at or dt.datetime.now(dt.UTC))
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return pd.DataFrame(
        {
            **{c: features[c].to_numpy() for c in contract.snapshot_keys},
            PROBABILITY: probability.astype("float64"),
            "risk_band": (bands or RiskBands(*contract.risk_bands)).assign(probability),
            "model_name": model_name,
            "model_version": str(model_version),
            "scored_at": stamp.floor("us"),
            CHALLENGER_PROBABILITY: shadowed if shadowed is not None else None,
            CHALLENGER_VERSION: str(shadow[1]) if shadow is not None else None,
        }
    )


def scores_to_arrow(scores: pd.DataFrame, contract: Contract) -> pa.Table:
    """The scores in the table's schema (raises if a column is missing or null where it must not be)."""
    entity_types = {c: pa.Array.from_pandas(scores[c]).type for c in contract.entity}
    schema = scores_schema(contract, {c: t for c, t in entity_types.items() if t != pa.null()})
    frame = scores.reindex(columns=schema.names)  # the shadow columns are null when nothing was shadowed
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True).astype("datetime64[us, UTC]")
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


@dataclass(frozen=True)
class WrittenScores:
    path: Location
    table_version: int
    rows: int
    replaced_rows: int  # rows of the same day that the write replaced (0 on the first scoring of a day)
    version_before: int | None  # the table's version before the write (None: the write created the table)


def _stored_rows(path: Location, date: dt.date, day_column: str) -> int:
    """Rows of ``date`` in the table, from the Delta log's file statistics (no data file is read)."""
    from deltalake.exceptions import TableNotFoundError

    try:
        actions = pa.table(lake.delta_table(path).get_add_actions(flatten=True))
    except TableNotFoundError:
        return 0
    if actions.num_rows == 0:
        return 0
    partition = f"partition.{day_column}"
    frame = actions.select([partition, "num_records"]).to_pandas()
    return int(frame.loc[pd.to_datetime(frame[partition]).dt.date == date, "num_records"].sum())


def write_scores(
    lake_root: Location,
    date: dt.date,
    scores: pd.DataFrame,
    contract: Contract,
    commit_metadata: dict[str, str] | None = None,
) -> WrittenScores:
    """Replace the scores of ``date`` in the Delta table with ``scores``, atomically; other days are untouched."""
    from deltalake import CommitProperties, write_deltalake

    day = contract.as_of
    days = set(pd.unique(scores[day]))
    if days != {date}:
        raise ValueError(f"scores for {date} must all carry {day} {date}; got {sorted(map(str, days))[:5]}")
    path = lake.batch_scores_path(lake_root)
    if not is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    replaced = _stored_rows(path, date, day)
    before = _version(path)
    metadata = {"snapshot_date": date.isoformat(), **(commit_metadata or {})}
    write_deltalake(
        str(path),
        scores_to_arrow(scores, contract),
        mode="overwrite",
        predicate=f"\"{day}\" = '{date.isoformat()}'",
        partition_by=[day],
        schema_mode="merge",  # a table written before batch shadow gains its (null) shadow columns
        commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(metadata, sort_keys=True)}),
        storage_options=lake.delta_options(path),
    )
    table = lake.delta_table(path)
    version = table.version()
    if version > 0 and version % CHECKPOINT_EVERY == 0:
        table.create_checkpoint()
    faults.write_point(faults.SCORES)
    return WrittenScores(
        path=path, table_version=version, rows=len(scores), replaced_rows=replaced, version_before=before
    )


def _version(path: Location) -> int | None:
    from deltalake.exceptions import TableNotFoundError

    try:
        return lake.delta_table(path).version()
    except TableNotFoundError:
        return None


def restore_day(lake_root: Location, date: dt.date, written: WrittenScores, contract: Contract) -> int:
    """Put back the day's scores as they were before ``written`` (none, if the day had none); returns the version.

    Only the day is rewritten, from the table as of ``written.version_before``: a whole-table restore would also
    undo the scores of another day written meanwhile by another run."""
    from deltalake import CommitProperties, write_deltalake

    day = contract.as_of
    if written.version_before is None:
        earlier = scores_schema(contract).empty_table()
    else:
        earlier = lake.delta_to_arrow(
            lake.delta_table(written.path, version=written.version_before), written.path,
            filters=_partition_filter(date, day),
        )  # fmt: skip
    metadata = {"snapshot_date": date.isoformat(), "restored_from_version": str(written.version_before)}
    write_deltalake(
        str(written.path),
        earlier,
        mode="overwrite",
        predicate=f"\"{day}\" = '{date.isoformat()}'",
        partition_by=[day],
        schema_mode="merge",
        commit_properties=CommitProperties(custom_metadata={"userMetadata": json.dumps(metadata, sort_keys=True)}),
        storage_options=lake.delta_options(written.path),
    )
    return lake.delta_table(written.path).version()


def read_scores_table(lake_root: Location, date: dt.date, contract: Contract) -> pa.Table:
    """The stored scores of ``date`` as Arrow (empty, in the table's schema, if the day was never scored)."""
    from deltalake.exceptions import TableNotFoundError

    path = lake.batch_scores_path(lake_root)
    try:
        table = lake.delta_table(path)
    except TableNotFoundError:
        return scores_schema(contract).empty_table()
    return lake.delta_to_arrow(table, path, filters=_partition_filter(date, contract.as_of))


def read_scores(lake_root: Location, date: dt.date, contract: Contract) -> pd.DataFrame:
    """The stored scores of ``date`` (empty, with the table's columns, if the day was never scored)."""
    frame = read_scores_table(lake_root, date, contract).to_pandas()
    if not frame.empty:
        frame[contract.as_of] = date
    return frame


def top_risk(scores: pd.DataFrame, features: pd.DataFrame, size: int, contract: Contract) -> pd.DataFrame:
    """The ``size`` entities most at risk, ranked, with the descriptive columns the contract names (its
    ``top_risk_columns``), what a retention team reads.

    ``scores`` is ``score_snapshot``'s output for ``features`` (row for row). Ties are broken by the entity key,
    so the list is the same every time the day is scored with the same model. Only the candidates are sorted: a
    partial selection finds them in a million rows in milliseconds.
    """
    entity = list(contract.entity)
    probability = scores[PROBABILITY].to_numpy()
    if len(probability) > size:
        cut = np.partition(probability, len(probability) - size)[len(probability) - size]
        candidates = np.flatnonzero(probability >= cut)  # every tie at the cut, so the tie-break stays exact
    else:
        candidates = np.arange(len(probability))
    top = scores.iloc[candidates].assign(_row=candidates)
    top = top.sort_values([PROBABILITY, *entity], ascending=[False, *[True] * len(entity)], kind="mergesort").head(size)
    context = [c for c in contract.top_risk_columns if c in features.columns]
    rows = top.pop("_row").to_numpy()
    described = features.iloc[rows]
    if not described[entity].reset_index(drop=True).equals(top[entity].reset_index(drop=True)):
        raise ValueError("scores and features are not row for row: pass score_snapshot's input with its output")
    top = top.reset_index(drop=True)
    for column in context:
        top[column] = described[column].to_numpy()
    top.insert(0, "rank", np.arange(1, len(top) + 1))
    return top[
        [
            "rank",
            *contract.snapshot_keys,
            PROBABILITY,
            "risk_band",
            *context,
            "model_name",
            "model_version",
        ]
    ]


def write_top_risk(lake_root: Location, date: dt.date, top: pd.DataFrame) -> Location:
    """Write the day's top-risk list as CSV, replacing the previous one atomically (temporary file, rename)."""
    return lake.write_atomically(
        lake.top_risk_path(lake_root, date), lambda tmp: top.to_csv(tmp, index=False, float_format="%.6f")
    )


@dataclass(frozen=True)
class ScoreSanity:
    """What the scores-are-sane check found in the stored scores of one day."""

    snapshot_entities: int
    scored_rows: int
    duplicated_entities: int
    missing_entities: int  # in the snapshot, not scored
    unexpected_entities: int  # scored, not in the snapshot
    null_values: int
    out_of_range: int  # probabilities outside [0, 1] (NaN counts as null, not here)

    @property
    def passed(self) -> bool:
        return (
            self.scored_rows == self.snapshot_entities
            and self.duplicated_entities == 0
            and self.missing_entities == 0
            and self.unexpected_entities == 0
            and self.null_values == 0
            and self.out_of_range == 0
        )

    def as_metadata(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


def check_scores(stored: pa.Table | pd.DataFrame, snapshot: pd.DataFrame, contract: Contract) -> ScoreSanity:
    """One score per entity of the snapshot (``snapshot``: its entity key columns), no nulls, probabilities in
    [0, 1].

    ``stored`` is the day read back from the table (Arrow: null counts come free with its columns).
    """
    table = stored if isinstance(stored, pa.Table) else pa.Table.from_pandas(stored, preserve_index=False)
    columns = [f.name for f in scores_schema(contract) if not f.nullable]
    scored_frame = table.select([c for c in contract.entity if c in table.column_names]).to_pandas()
    scored = entity_index(scored_frame, contract) if len(scored_frame.columns) == len(contract.entity) else None
    expected = entity_index(snapshot, contract).drop_duplicates()
    probability = table.column(PROBABILITY).to_numpy(zero_copy_only=False)
    if CHALLENGER_PROBABILITY in table.column_names:  # a shadow score outside [0, 1] is as broken as the champion's
        shadowed = table.column(CHALLENGER_PROBABILITY).drop_null().to_numpy(zero_copy_only=False)
        probability = np.concatenate([probability, shadowed])
    if scored is None:
        raise KeyError(f"the stored scores lack the entity columns {list(contract.entity)}")
    complete = scored[~scored_frame.isna().any(axis=1).to_numpy()]
    return ScoreSanity(
        snapshot_entities=len(expected),
        scored_rows=table.num_rows,
        duplicated_entities=int(scored.duplicated().sum()),
        missing_entities=int((~expected.isin(scored)).sum()),
        unexpected_entities=int((~complete.drop_duplicates().isin(expected)).sum()),
        null_values=int(sum(table.column(c).null_count for c in columns if c in table.column_names))
        + sum(1 for c in columns if c not in table.column_names) * table.num_rows,
        out_of_range=int(((probability < 0) | (probability > 1)).sum()),
    )
