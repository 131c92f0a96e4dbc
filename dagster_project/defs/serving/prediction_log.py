"""The prediction log: every online prediction, with the features it used, in the lake for monitoring.

Rows are gathered a column at a time (``GatheredRows``), buffered in memory as Arrow record batches, and written by
a background thread, one Parquet file per flush and feature day under
``lake.prediction_log_dir(lake_root, day)``, when ``flush_rows`` are waiting or ``flush_seconds`` have passed, and
at shutdown. Each file is written atomically (a temporary file, then a rename), so a reader never sees half a file.
The writer thread only joins record batches and writes Parquet, Arrow's C++ work: it holds the GIL for
microseconds, where turning a flush's thousands of dicts into a table held it for tens of milliseconds, a stall of
whichever request was being answered.

Nothing is lost silently: a failed flush keeps its rows for the next one and is counted; only when the buffer
reaches ``max_buffered_rows`` (the lake unwritable for long) are the oldest rows dropped, and they are counted
too (``LogStats``, exposed by the service's /metrics).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from dagster_project import lake
from spark_jobs.object_store import Location, join

logger = logging.getLogger(__name__)

FEATURE_SNAPSHOT_DATE = "feature_snapshot_date"
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("entity_key", pa.string(), nullable=False),
        pa.field("features", pa.string(), nullable=False),  # JSON: feature name -> value, overrides applied
        pa.field("overrides", pa.string(), nullable=False),  # JSON: the request-time overrides ({} if none)
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("probability", pa.float64(), nullable=False),
        pa.field("risk_band", pa.string(), nullable=False),
        pa.field("shadow_model_version", pa.string(), nullable=True),
        pa.field("shadow_probability", pa.float64(), nullable=True),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("requested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field(FEATURE_SNAPSHOT_DATE, pa.date32(), nullable=False),
    ]
)
COLUMNS = SCHEMA.names


class GatheredRows:
    """Log rows gathered a column at a time (a few list extends per request) and made into one Arrow batch per
    ``take``: for a handful of rows, building fourteen Arrow arrays costs a quarter of a millisecond, more than
    the prediction; for a few thousand at once it costs a few microseconds a row. Not thread-safe: the service
    gathers and takes on its event loop."""

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        self.rows = 0

    def add(self, columns: dict[str, Any], rows: int) -> None:
        """Gather ``rows`` rows: per column a sequence (or array) of ``rows`` values, or one value for a column that
        is the same on every row (the request id, its latency, its time, its feature day)."""
        extensions = {}
        for name in COLUMNS:  # every column checked before any grows: the columns stay row for row
            values = columns[name]
            if isinstance(values, np.ndarray):
                values = values.tolist()
            elif isinstance(values, str | float | int | dt.date | dt.datetime) or values is None:
                values = list(itertools.repeat(values, rows))
            elif not isinstance(values, list):
                values = list(values)
            if len(values) != rows:
                raise ValueError(f"log column {name!r} has {len(values)} values for {rows} rows")
            extensions[name] = values
        for name, values in extensions.items():
            self._columns[name].extend(values)
        self.rows += rows

    def take(self) -> pa.RecordBatch | None:
        """The gathered rows as one record batch (None if there are none); the gathering starts again, also when
        the rows cannot be made into a batch (the caller counts them)."""
        if not self.rows:
            return None
        columns, self._columns, self.rows = self._columns, {name: [] for name in COLUMNS}, 0
        return pa.RecordBatch.from_arrays(
            [pa.array(columns[field.name], type=field.type) for field in SCHEMA], schema=SCHEMA
        )


@dataclass(frozen=True)
class LogStats:
    rows_written: int
    rows_buffered: int
    rows_dropped: int  # dropped because the buffer was full after failed flushes
    files_written: int
    failed_flushes: int
    last_error: str | None


class PredictionLogWriter:
    """A thread-safe buffered writer of the prediction log (``append`` from any thread; ``close`` flushes)."""

    def __init__(
        self,
        lake_root: Location,
        *,
        flush_rows: int = 5_000,
        flush_seconds: float = 5.0,
        max_buffered_rows: int | None = None,
    ) -> None:
        self.lake_root = lake_root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_buffered_rows = max_buffered_rows or max(20 * flush_rows, 100_000)
        self._batches: list[pa.RecordBatch] = []
        self._buffered = 0  # rows in ``_batches``
        self._lock = threading.Lock()  # guards the buffer and the counters
        self._flush_lock = threading.Lock()  # one flush at a time, so files of one day never race
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = self._dropped = self._files = self._failed = 0
        self._last_error: str | None = None

    def start(self) -> PredictionLogWriter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()
        return self

    def append(self, rows: Sequence[dict[str, Any]] | pa.RecordBatch) -> None:
        """Buffer ``rows`` (a batch of ``GatheredRows``, or dicts with the ``SCHEMA``'s columns); a full buffer wakes
        the writer."""
        batch = rows if isinstance(rows, pa.RecordBatch) else pa.RecordBatch.from_pylist(list(rows), schema=SCHEMA)
        if batch.num_rows == 0:
            return
        with self._lock:
            self._batches.append(batch)
            self._buffered += batch.num_rows
            overflow = self._buffered - self.max_buffered_rows
            if overflow > 0:
                self._drop_oldest(overflow)
                logger.error("prediction log buffer full: dropped the %d oldest rows", overflow)
            full = self._buffered >= self.flush_rows
        if full:
            self._wake.set()

    def _drop_oldest(self, count: int) -> None:
        """Drop the ``count`` oldest buffered rows (under the lock), counted."""
        left = count
        while left > 0:
            first = self._batches[0]
            if first.num_rows <= left:
                self._batches.pop(0)
                left -= first.num_rows
            else:
                self._batches[0] = first.slice(left)
                left = 0
        self._buffered -= count
        self._dropped += count

    def flush(self) -> int:
        """Write the buffered rows now, one file per feature day; returns the rows written. A failure keeps them."""
        with self._flush_lock:
            with self._lock:
                batches, self._batches, self._buffered = self._batches, [], 0
            if not batches:
                return 0
            table = pa.Table.from_batches(batches, schema=SCHEMA)
            days = table.column(FEATURE_SNAPSHOT_DATE)
            written = 0
            for day in pc.unique(days).to_pylist():
                day_rows = table.filter(pc.equal(days, pa.scalar(day, type=pa.date32())))
                try:
                    write_log_file(self.lake_root, day, day_rows)
                except Exception as error:
                    with self._lock:
                        self._failed += 1
                        self._last_error = f"{type(error).__name__}: {error}"
                        kept = day_rows.combine_chunks().to_batches()
                        self._batches[:0] = kept  # back to the front, for the next flush
                        self._buffered += day_rows.num_rows
                    logger.exception("prediction log flush of %d rows for %s failed", day_rows.num_rows, day)
                    continue
                written += day_rows.num_rows
                with self._lock:
                    self._written += day_rows.num_rows
                    self._files += 1
            return written

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        while not self._stop.is_set():
            self._wake.wait(timeout=max(0.0, deadline - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                due = self._buffered >= self.flush_rows or time.monotonic() >= deadline
            if due:
                self.flush()
                deadline = time.monotonic() + self.flush_seconds

    def close(self) -> LogStats:
        """Stop the background thread and write what is left."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()
        return self.stats()

    def stats(self) -> LogStats:
        with self._lock:
            return LogStats(
                rows_written=self._written,
                rows_buffered=self._buffered,
                rows_dropped=self._dropped,
                files_written=self._files,
                failed_flushes=self._failed,
                last_error=self._last_error,
            )


def write_log_file(lake_root: Location, day: dt.date, rows: pa.Table | Sequence[dict[str, Any]]) -> Location:
    """One new Parquet file of ``rows`` (all of feature day ``day``) in the day's folder, written atomically."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=SCHEMA)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    path = join(lake.prediction_log_dir(lake_root, day), f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet")
    return lake.write_partition_atomically(table, path)


def read_prediction_log(lake_root: Location, day: dt.date) -> pd.DataFrame:
    """Every logged prediction made on ``day``'s features, oldest first (empty, with the columns, if none)."""
    files = lake.list_files(lake.prediction_log_dir(lake_root, day))
    if not files:
        return SCHEMA.empty_table().to_pandas()
    table = pa.concat_tables([lake.read_parquet(f, schema=SCHEMA) for f in files])
    frame = table.to_pandas()
    return frame.sort_values("requested_at", kind="mergesort").reset_index(drop=True)
