"""The data lake's layout, and how its files are read and written: the only module that knows where a table lives.

Layout, under the lake root (``settings.lake_root``)::

    raw/<table>/date=YYYY-MM-DD/part-0.parquet             the validated raw rows of a day
    quarantine/<table>/date=YYYY-MM-DD/part-<write>.parquet  the rows set aside, with their reasons: the file the
                                                           raw partition names (``write_raw_day``)
    features/<model>/date=YYYY-MM-DD/part-0.parquet        the dbt feature and label exports
    offline_store/feature_snapshots                        Delta, by snapshot_date (spark_jobs)
    offline_store/training_set                             Delta, one version per build (spark_jobs)
    offline_store/_protected_versions.json                 the versions registered models still reference
    scoring/batch_scores                                   Delta, by snapshot_date (delta-rs)
    scoring/top_risk/date=YYYY-MM-DD/top_risk.csv          the day's list for the retention team
    monitoring/drift_reports/date=YYYY-MM-DD/report.html   the day's Evidently report
    monitoring/model_performance/date=YYYY-MM-DD/part-0.parquet
    monitoring/online_predictions/date=YYYY-MM-DD/part-0.parquet  the day's judgement of the online predictions
    monitoring/online_drift_reports/date=YYYY-MM-DD/report.html   the Evidently report of a day's online traffic
    serving/prediction_log/date=YYYY-MM-DD/part-<flush>.parquet  the prediction service's log, by feature day

Parquet partitions are one file per day, replaced atomically, so a reader (or a crash) sees either the old
partition or the new one, never half of either. A raw day and its quarantine are one commit: the raw file is
written last and names the quarantine file written with it. dbt reads the same layout (``dbt_project/macros/lake.sql``).
The names inside ``offline_store/`` belong to ``spark_jobs.paths``: the Spark jobs are handed that folder.

The root is a local folder or an object-store prefix (``s3://bucket/prefix``); every location below it is then a
``Path`` or a URI string (``spark_jobs.object_store.Location``), and every read and write here goes through the
file system of its location. The store is reached as AWS's own clients reach it (``settings.object_store``).

An object store has no rename, but it replaces an object whole: an upload becomes visible at its end, all at
once, and one GET returns one version of an object. So every file of the layout is one object, put in one
upload (``write_atomically``), and the platform's readers take a file in one version: pyarrow's in one GET
(``read_parquet``), DuckDB's (dbt's sources) pinned to the version first seen, or failing by the file's name
(``pinned_files``). A Parquet reader's usual ranged requests (footer, then column chunks) could otherwise take the
footer of one version and the chunks of the next while a day is rewritten. Spark reads the exports through s3a,
whose change detection (on by default) fails a stream that meets a new version rather than read on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dagster_project import faults
from dagster_project.settings import get_settings, object_store
from spark_jobs.object_store import Location, ObjectStore, bucket_key, filesystem_and_path, is_uri, join
from spark_jobs.paths import OfflineStorePaths

if TYPE_CHECKING:
    from deltalake import DeltaTable

# Layers: the first folder below the lake root.
RAW = "raw"
QUARANTINE = "quarantine"
FEATURES = "features"
OFFLINE_STORE = "offline_store"
SCORING = "scoring"
MONITORING = "monitoring"
SERVING = "serving"

PARTITION_FILE = "part-0.parquet"
# In a raw partition's Parquet metadata: the file name of the quarantine written with it.
QUARANTINE_FILE_KEY = b"platform.quarantine_file"

# Tables that are not named by the data (raw tables and dbt models are) nor by the offline store's jobs.
BATCH_SCORES_TABLE = "batch_scores"
TOP_RISK_TABLE = "top_risk"
TOP_RISK_FILE = "top_risk.csv"
DRIFT_REPORTS_TABLE = "drift_reports"
DRIFT_REPORT_FILE = "report.html"
MODEL_PERFORMANCE_TABLE = "model_performance"
PREDICTION_LOG_TABLE = "prediction_log"
ONLINE_PREDICTIONS_TABLE = "online_predictions"
ONLINE_DRIFT_REPORTS_TABLE = "online_drift_reports"


def table_dir(root: Location, layer: str, table: str) -> Location:
    return join(root, layer, table)


def partition_dir(root: Location, layer: str, table: str, date: dt.date) -> Location:
    return join(table_dir(root, layer, table), f"date={date.isoformat()}")


def partition_path(root: Location, layer: str, table: str, date: dt.date) -> Location:
    return join(partition_dir(root, layer, table, date), PARTITION_FILE)


def offline_store(root: Location) -> OfflineStorePaths:
    """The offline store's tables (Delta feature snapshots, training sets, the protected-versions file): what every
    caller of ``spark_jobs`` is handed."""
    return OfflineStorePaths(store_root=join(root, OFFLINE_STORE))


def batch_scores_path(root: Location) -> Location:
    """The Delta table of nightly scores."""
    return table_dir(root, SCORING, BATCH_SCORES_TABLE)


def top_risk_path(root: Location, date: dt.date) -> Location:
    return join(partition_dir(root, SCORING, TOP_RISK_TABLE, date), TOP_RISK_FILE)


def drift_report_path(root: Location, date: dt.date) -> Location:
    return join(partition_dir(root, MONITORING, DRIFT_REPORTS_TABLE, date), DRIFT_REPORT_FILE)


def online_predictions_path(root: Location, date: dt.date) -> Location:
    return partition_path(root, MONITORING, ONLINE_PREDICTIONS_TABLE, date)


def online_drift_report_path(root: Location, date: dt.date) -> Location:
    return join(partition_dir(root, MONITORING, ONLINE_DRIFT_REPORTS_TABLE, date), DRIFT_REPORT_FILE)


def prediction_log_dir(root: Location, date: dt.date) -> Location:
    """The prediction service's log of the predictions made on ``date``'s features: one Parquet file per flush."""
    return partition_dir(root, SERVING, PREDICTION_LOG_TABLE, date)


def model_performance_path(root: Location, date: dt.date) -> Location:
    return partition_path(root, MONITORING, MODEL_PERFORMANCE_TABLE, date)


# Reading and writing, whichever file system a location is on.


def filesystem(location: Location) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system of ``location`` and the path on it."""
    return filesystem_and_path(location, object_store() if is_uri(location) else None)


def exists(location: Location) -> bool:
    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def name(location: Location) -> str:
    """The last part of a location: a file's name."""
    return str(location).rstrip("/").rsplit("/", 1)[-1]


def list_files(folder: Location, prefix: str = "part-", suffix: str = ".parquet") -> list[Location]:
    """The files of ``folder`` (not below it) named ``prefix...suffix``, sorted by name; none if it is absent.
    Temporary files start with a dot, so no prefix of the layout matches them."""
    fs, path = filesystem(folder)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    names = sorted(n for n in (name(i.path) for i in infos if i.type == pafs.FileType.File)
                   if n.startswith(prefix) and n.endswith(suffix))  # fmt: skip
    return [join(folder, n) for n in names]


def delete(location: Location) -> None:
    """Delete a file; nothing if it is absent."""
    fs, path = filesystem(location)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def read_parquet(location: Location, **options: Any) -> pa.Table:
    """A Parquet file, read from the object store in one GET (one version of it, see the module's doc)."""
    if not is_uri(location):
        return pq.read_table(location, **options)
    return pq.read_table(pa.BufferReader(_read_whole(bucket_key(location))), **options)


def _read_whole(path: str) -> pa.Buffer:
    """The object at ``bucket/key``, in one plain GET: one version of it, whole. (pyarrow's client asks for the
    size first, then for that range: a version replaced in between by a longer one would come back cut.)"""
    bucket, _, key = path.partition("/")
    response = _s3_client(object_store()).get_object(Bucket=bucket, Key=key)
    with response["Body"] as body:
        return pa.py_buffer(body.read())


@functools.lru_cache(maxsize=4)
def _s3_client(store: ObjectStore) -> Any:
    """boto3's client of the store, one per store and process (a client is thread-safe)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=store.endpoint_url, region_name=store.region,
        aws_access_key_id=store.access_key_id, aws_secret_access_key=store.secret_access_key,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path" if store.path_style else "auto"}),
    )  # fmt: skip


def read_parquet_metadata(location: Location) -> pq.FileMetaData:
    """A Parquet file's footer only: its row count and schema, no data."""
    fs, path = filesystem(location)
    with fs.open_input_file(path) as source:
        return pq.read_metadata(source)


def read_text(location: Location) -> str:
    fs, path = filesystem(location)
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8")


def duckdb_filesystem(root: Location) -> Any | None:
    """The file system DuckDB reads an object-store lake through (``connection.register_filesystem``), or None
    for a local one: the platform's S3 clients as an fsspec file system for ``s3://`` that reads each file in one
    version (``pinned_files``; DuckDB's own httpfs would be downloaded at run time). One per connection."""
    if not is_uri(root):
        return None
    from dagster_project.pinned_files import PinnedS3Files

    store = object_store()
    return PinnedS3Files(filesystem(root)[0], _s3_client(store))


# How long a link to a file on the object store opens it: the longest a signed link may live (S3's limit).
LINK_SECONDS = 7 * 24 * 3600


def link(location: Location) -> str:
    """A URL that opens the file in a browser, what the UI links to: ``file://`` for a local file; for one on the
    object store, a link signed with the store's keys, valid for ``LINK_SECONDS``, over the address a browser
    reaches the store at (``settings.lake_link_endpoint_url``; the store's own endpoint when unset)."""
    if not is_uri(location):
        return Path(location).resolve().as_uri()
    bucket, _, key = bucket_key(location).partition("/")
    store, public = object_store(), get_settings().lake_link_endpoint_url
    client = _s3_client(dataclasses.replace(store, endpoint_url=public) if public else store)
    return client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=LINK_SECONDS)


def delta_options(location: Location) -> dict[str, str] | None:
    """delta-rs's storage options for a table at ``location``: the object store's, or none for a local table."""
    return object_store().delta_options() if is_uri(location) else None


def delta_table(location: Location, version: int | None = None) -> DeltaTable:
    """The Delta table at ``location`` (delta-rs), at ``version`` or its latest."""
    from deltalake import DeltaTable

    return DeltaTable(str(location), version=version, storage_options=delta_options(location))


def delta_to_arrow(
    table: DeltaTable,
    location: Location,
    *,
    filters: list[tuple[str, str, Any]] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """A Delta table's rows as Arrow: those matching ``filters`` (DNF tuples), of ``columns`` (all if None).

    ``filters`` prune the table's files while its log is replayed, before a fragment is set up per file: a day of a
    120-day table reads in a twentieth of the time delta-rs's ``to_pyarrow_table(filters=...)`` takes, which sets
    up every file first. The rows of the files kept are then filtered exactly.

    On the object store the files are read by pyarrow's own S3 client: delta-rs's default wraps its store in
    Python callbacks, which can abort the interpreter at exit under a pending read."""
    from pyarrow.parquet import filters_to_expression

    files = None
    if is_uri(location):
        fs, path = filesystem(location)
        files = pafs.SubTreeFileSystem(path, fs)
    dataset = table.to_pyarrow_dataset(file_pruning_predicate=filters, filesystem=files)
    rows = None if filters is None else filters_to_expression(filters)
    return dataset.to_table(columns=columns, filter=rows)


def write_atomically(path: Location, write: Callable[[Path], None]) -> Location:
    """Call ``write`` on a temporary file, then put it in place at ``path`` in one step.

    Locally the temporary file is in ``path``'s folder and renamed into place, atomic on POSIX within one file
    system. On the object store it is a local file, uploaded as one object: the store makes the object visible
    whole, at the end of the upload. Either way readers, and a run killed at any point, see the old file or the
    new one. The temporary file is removed when ``write`` fails.
    """
    if is_uri(path):
        return _upload(path, write)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _upload(uri: str, write: Callable[[Path], None]) -> str:
    fs, key = filesystem(uri)
    with tempfile.TemporaryDirectory(prefix="platform-upload-") as folder:
        tmp = Path(folder) / name(uri)
        write(tmp)
        with tmp.open("rb") as source, fs.open_output_stream(key) as target:
            shutil.copyfileobj(source, target, length=8 << 20)
    return uri


def write_text_atomically(path: Location, text: str) -> Location:
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_partition_atomically(table: pa.Table, path: Location) -> Location:
    """Write ``table`` to ``path`` as Parquet, timestamps in microseconds (what Spark reads), atomically."""
    return write_atomically(
        path, lambda tmp: pq.write_table(table, tmp, coerce_timestamps="us", allow_truncated_timestamps=False)
    )


def write_raw_day(
    root: Location, table: str, date: dt.date, kept: pa.Table, quarantined: pa.Table
) -> tuple[Location, Location]:
    """Write a raw day and its quarantine as one commit; returns (raw path, quarantine path).

    Two files cannot be renamed into place at once, so the quarantine goes first, to a file of its own write, and
    the raw partition goes last, naming that file in its metadata: the raw file's rename is the commit. A process
    killed in between leaves the old raw file, which still names the old quarantine: readers of the pair
    (``read_quarantine``) never count a row both kept and quarantined. Quarantine files that no raw file names
    are removed once the commit is done, or by the next write.
    """
    folder = partition_dir(root, QUARANTINE, table, date)
    quarantine_path = join(folder, f"part-{uuid.uuid4().hex}.parquet")
    write_partition_atomically(quarantined, quarantine_path)
    faults.write_point(faults.QUARANTINE)
    metadata = {**(kept.schema.metadata or {}), QUARANTINE_FILE_KEY: name(quarantine_path).encode()}
    raw_path = write_partition_atomically(
        kept.replace_schema_metadata(metadata), partition_path(root, RAW, table, date)
    )
    faults.write_point(faults.RAW)
    for stale in list_files(folder):
        if name(stale) != name(quarantine_path):
            delete(stale)
    return raw_path, quarantine_path


def committed_quarantine_path(root: Location, table: str, date: dt.date) -> Location | None:
    """The quarantine file that goes with the day's raw partition; None if the day has no raw partition."""
    raw = partition_path(root, RAW, table, date)
    if not exists(raw):
        return None
    named = (read_parquet_metadata(raw).metadata or {}).get(QUARANTINE_FILE_KEY)  # the file's key-value metadata
    # A raw partition written before quarantines were named pairs with the one file of the old layout.
    return join(partition_dir(root, QUARANTINE, table, date), named.decode() if named else PARTITION_FILE)


def read_quarantine(root: Location, table: str, date: dt.date) -> pa.Table | None:
    """The rows quarantined with the day's committed raw partition (None if the day has none)."""
    path = committed_quarantine_path(root, table, date)
    return read_parquet(path) if path is not None and exists(path) else None
