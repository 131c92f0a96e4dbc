"""Reading a raw table and splitting it into valid rows and quarantined rows, with exact accounting.

A problem with the whole file (unreadable, empty, not UTF-8, a missing or unexpected column) is a
``RawInputError`` naming the file and the column: nothing of such a file is loaded. A problem with a row
(a value of the wrong type, a null key, a duplicate, a value out of range) sends that row to quarantine with
the failed checks and columns named; the other rows go on. Every input row ends in exactly one of the two.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.parquet as pq

from dagster_project.defs.ingestion.schemas import TableSpec

ROW_NUMBER = "_row_number"  # position of the row in its source, 0-based; survives every filtering step

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("row_number", pa.int64(), nullable=False),
        pa.field("failed_columns", pa.string(), nullable=False),
        pa.field("failed_checks", pa.string(), nullable=False),
        pa.field("failure_values", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),  # the row as it arrived, as JSON
        pa.field("source", pa.string(), nullable=False),
    ]
)


class RawInputError(ValueError):
    """A raw file that cannot be loaded at all; the message names the file and, where one is at fault, the column."""


@dataclass
class ValidationResult:
    table: str
    source: str
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    failures_by_check: dict[str, int] = field(default_factory=dict)

    @property
    def rows_in(self) -> int:
        return len(self.valid) + len(self.quarantine)

    @property
    def rows_kept(self) -> int:
        return len(self.valid)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantine)

    @property
    def quarantined_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0


def read_landing_file(path: Path) -> pd.DataFrame:
    """A landing file as it is, every CSV value still a string (types are checked row by row later)."""
    if path.stat().st_size == 0:
        raise RawInputError(f"{path}: the file is empty (not even a header row)")
    if path.suffix == ".parquet":
        try:
            return pq.read_table(path).to_pandas()
        except Exception as error:  # pyarrow raises several types for corrupt files
            raise RawInputError(f"{path}: not a readable Parquet file ({error})") from error
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise RawInputError(
            f"{path}: not valid UTF-8 (byte 0x{raw[error.start]:02x} on line {line}); save the file as UTF-8"
        ) from error
    if not text.strip():
        raise RawInputError(f"{path}: the file is empty (not even a header row)")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    except pd.errors.ParserError as error:
        raise RawInputError(f"{path}: not a readable CSV file ({error})") from error


def _check_columns(frame: pd.DataFrame, spec: TableSpec, source: str) -> None:
    declared = list(spec.columns)
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        raise RawInputError(
            f"{source}: missing required column(s) {', '.join(missing)} of table {spec.name}; "
            f"expected columns: {', '.join(declared)}"
        )
    unexpected = [str(c) for c in frame.columns if c not in declared]
    if unexpected:
        raise RawInputError(
            f"{source}: unexpected column(s) {', '.join(unexpected)} in table {spec.name}; "
            "a new column is a schema change: declare it in dagster_project/defs/ingestion/schemas.py"
        )


def _coerce(values: pd.Series, dtype: str, is_date: bool) -> pd.Series:
    if dtype.startswith("datetime64"):
        parsed = pd.to_datetime(values, errors="coerce", format="mixed") if values.dtype == object else values
        parsed = pd.to_datetime(parsed, errors="coerce")
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        parsed = parsed.astype("datetime64[us]")
        return parsed.dt.normalize() if is_date else parsed
    if dtype == "int64":
        numbers = pd.to_numeric(values, errors="coerce")
        whole = numbers.where(numbers.isna() | (numbers == numbers.round()))
        return whole.astype("Int64")
    if dtype == "float64":
        return pd.to_numeric(values, errors="coerce").astype("float64")
    return values.map(lambda v: v if isinstance(v, str) else str(v), na_action="ignore").astype(object)


def _type_failures(raw: pd.DataFrame, typed: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Rows whose value arrived but could not be read as the column's type."""
    failures = []
    for name, dtype in spec.columns.items():
        bad = raw[name].notna() & typed[name].isna()
        for position in bad[bad].index:
            failures.append(
                {"index": position, "column": name, "check": f"type({dtype})", "failure_case": raw.at[position, name]}
            )
    return pd.DataFrame(failures, columns=["index", "column", "check", "failure_case"])


def validate(frame: pd.DataFrame, spec: TableSpec, partition_date: dt.date, source: str) -> ValidationResult:
    """Split ``frame`` into the rows that satisfy ``spec`` and the rows to quarantine, with the reasons."""
    _check_columns(frame, spec, source)
    raw = frame[list(spec.columns)].reset_index(drop=True)
    typed = pd.DataFrame(
        {name: _coerce(raw[name], dtype, name in spec.date_columns) for name, dtype in spec.columns.items()}
    )
    failures = [_type_failures(raw, typed, spec), _null_failures(typed, spec)]
    # pandera sees only rows whose every value was read and every required value is there, typed as declared.
    set_aside = set().union(*(set(f["index"]) for f in failures))
    candidates = typed.drop(index=sorted(set_aside)).astype(
        {name: "int64" for name, dtype in spec.columns.items() if dtype == "int64"}
    )
    try:
        spec.schema_for(partition_date).validate(candidates, lazy=True)
    except pandera.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        unplaced = cases[cases["index"].isna()]
        if len(unplaced):
            # A failure pandera cannot tie to a row concerns the whole table: it is the file's fault.
            first = unplaced.iloc[0]
            raise RawInputError(
                f"{source}: column {first['column']} fails {first['check']} ({first['failure_case']})"
            ) from errors
        failures.append(cases[["index", "column", "check", "failure_case"]])
    failed = pd.concat([f for f in failures if len(f)] or failures[:1], ignore_index=True)
    failed["index"] = failed["index"].astype("int64")
    # A value of the wrong type is also null once read: report the row's real cause once.
    failed = failed.drop_duplicates(subset=["index", "column"], keep="first")
    bad_rows = sorted(set(failed["index"]))
    valid = typed.drop(index=bad_rows)
    valid = valid.astype({name: "int64" for name, dtype in spec.columns.items() if dtype == "int64"})
    quarantine = _quarantine_rows(raw, failed, bad_rows, source)
    counts = Counter(f"{row.column}:{row.check}" for row in failed.itertuples())
    return ValidationResult(
        table=spec.name,
        source=source,
        valid=valid.reset_index(drop=True),
        quarantine=quarantine,
        failures_by_check=dict(sorted(counts.items())),
    )


def _null_failures(typed: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """Rows missing a value that the table requires (keys above all)."""
    columns = spec.model.to_schema().columns
    failures = []
    for name in spec.columns:
        if columns[name].nullable:
            continue
        missing = typed[name].isna()
        failures += [
            {"index": i, "column": name, "check": "not_nullable", "failure_case": None} for i in missing[missing].index
        ]
    return pd.DataFrame(failures, columns=["index", "column", "check", "failure_case"])


def _quarantine_rows(raw: pd.DataFrame, failed: pd.DataFrame, bad_rows: list[int], source: str) -> pd.DataFrame:
    if not bad_rows:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    grouped = failed.sort_values(["index", "column"]).groupby("index")
    rows = []
    for position, group in grouped:
        record = {k: (None if pd.isna(v) else str(v)) for k, v in raw.loc[position].items()}
        rows.append(
            {
                "row_number": int(position),
                "failed_columns": ", ".join(group["column"].astype(str)),
                "failed_checks": "; ".join(f"{c}:{k}" for c, k in zip(group["column"], group["check"], strict=True)),
                "failure_values": json.dumps([None if pd.isna(v) else str(v) for v in group["failure_case"]]),
                "record": json.dumps(record),
                "source": source,
            }
        )
    return pd.DataFrame(rows, columns=QUARANTINE_SCHEMA.names)
