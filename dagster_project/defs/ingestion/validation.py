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
import re
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np
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
    rows_in: int  # counted from the input itself, so kept + quarantined = rows in is a real check
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    failures_by_check: dict[str, int] = field(default_factory=dict)
    values_normalized: dict[str, int] = field(default_factory=dict)  # per text column, see _normalize_text

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
            # Integer columns with a null stay Python ints: the pandas default, floats, would turn id 1 into 1.0.
            return pq.read_table(path).to_pandas(integer_object_nulls=True)
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


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_PLAIN_INT = r"\s*[+-]?\d{1,18}\s*"  # fits int64 whatever the digits: the fast, exact path for most text
_ZONE_AFTER_TIME = r"^(.*\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def _exact_int(value: object) -> int | None:
    """``value`` as a whole number that fits int64, read exactly (never through a float), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if "_" in text:  # Decimal reads "1_000"; no CSV writer means that
            return None
        try:
            decimal = Decimal(text)
        except InvalidOperation:
            return None
        # ``adjusted`` bounds the size before ``int`` builds a number of a billion digits from "1e999999999".
        if not decimal.is_finite() or decimal.adjusted() > 19 or decimal != decimal.to_integral_value():
            return None
        number = int(decimal)
    return number if INT64_MIN <= number <= INT64_MAX else None


def _to_int64(values: pd.Series) -> pd.Series:
    """Whole numbers as ``Int64``; anything else (a fraction, text, a count beyond 64 bits) becomes null."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return pd.Series(pd.NA, index=values.index, dtype="Int64")
    if pd.api.types.is_signed_integer_dtype(values.dtype):
        return values.astype("Int64")
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.notna() & (values == values.round()) & (values.abs() < 2.0**63)
        return values.where(whole).astype("Int64")
    result = pd.Series(pd.NA, index=values.index, dtype="Int64")
    present = values[values.notna()].astype(object)
    plain = present.map(lambda v: isinstance(v, str)).astype(bool) & present.astype(str).str.fullmatch(_PLAIN_INT)
    if plain.any():
        result[plain[plain].index] = pd.to_numeric(present[plain].str.strip()).astype("int64")
    rest = present[~plain].map(_exact_int)
    rest = rest[rest.notna()]
    if len(rest):
        result[rest.index] = rest.astype("int64")
    return result


def _to_timestamps(values: pd.Series, is_date: bool) -> pd.Series:
    """Instants as naive UTC, calendar days as midnight of the day written; unreadable values become null.

    The rule for time zones: a value with a UTC offset (or ``Z``) is converted to UTC; a value without one is
    taken as UTC already, as everything in the lake is. So one file may mix offsets (a daylight-saving day)
    and naive values. A calendar day keeps the day as written: ``2025-03-01T00:00+01:00`` is 1 March, not
    the UTC instant's 28 February. Text must be ISO 8601: ``03/01/2025`` could be either of two days.
    """
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None) if is_date else parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        objects = values.astype(object)
        if is_date:
            objects = objects.map(lambda v: re.sub(_ZONE_AFTER_TIME, r"\1", v) if isinstance(v, str) else v)
        text = objects.map(lambda v: v.strip() if isinstance(v, str) else None).astype(object)
        # Zoned and naive values are parsed apart: in one call pandas gives a naive value the offset of the
        # zoned value before it, silently.
        zoned = text.str.match(_ZONE_AFTER_TIME).fillna(False).astype(bool)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        for part in (zoned, ~zoned):
            if part.any():
                read = pd.to_datetime(text[part], errors="coerce", format="ISO8601", utc=True)
                parsed[part] = read.dt.tz_localize(None)
        # Calendar days from Parquet arrive as ``datetime.date``, which the ISO 8601 parser leaves aside.
        days = objects.map(lambda v: isinstance(v, dt.date)).astype(bool)
        if days.any():
            parsed[days] = pd.to_datetime(objects[days])
    else:  # numbers (epoch seconds? milliseconds?) are no instant anyone can vouch for
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    parsed = parsed.astype("datetime64[us]")
    return parsed.dt.normalize() if is_date else parsed


def _coerce(values: pd.Series, dtype: str, is_date: bool) -> pd.Series:
    if dtype.startswith("datetime64"):
        return _to_timestamps(values, is_date)
    if dtype == "int64":
        return _to_int64(values)
    if dtype == "float64":
        if pd.api.types.is_bool_dtype(values.dtype):
            return pd.Series(float("nan"), index=values.index)
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


def _text_column(values: pd.Series, name: str, spec: TableSpec, source: str) -> pd.Series:
    """A declared text column as ``str`` values; integers (ids in a Parquet file) are written out exactly.

    Any other type is the file's fault, not a row's: a float id cannot be told apart from a rounded one
    (``1.0`` from ``1``, or ``1e16 + 1`` from ``1e16``), so the file is refused rather than guessed at.
    """
    present = values.dropna()
    if present.empty:
        return pd.Series(None, index=values.index, dtype=object)
    if pd.api.types.is_integer_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values.astype(object).map(lambda v: str(int(v)), na_action="ignore").astype(object)
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        refused = present.map(lambda v: not isinstance(v, str | int | np.integer) or isinstance(v, bool | np.bool_))
        if not refused.any():
            return values.map(lambda v: v if isinstance(v, str) else str(int(v)), na_action="ignore").astype(object)
        example = present[refused.astype(bool)].iloc[0]
    else:
        example = present.iloc[0]
    raise RawInputError(
        f"{source}: column {name} holds {type(example).__name__} values (such as {example!r}) where table "
        f"{spec.name} declares text; write ids as text or integers: a float id cannot be told from a rounded one"
    )


def _normalize_text(text: pd.Series) -> tuple[pd.Series, int]:
    """Surrounding whitespace dropped and Unicode in normal form NFC; blank becomes null. Returns the count changed.

    " C1" and "C1", or "José" typed as e + combining accent and as é, are one value to every reader after
    this layer; leaving them apart would make two customers of one.
    """
    present = text.dropna()
    if present.empty:
        return text, 0
    clean = present.str.strip().str.normalize("NFC")
    normalized = text.copy()
    normalized[clean.index] = clean.where(clean != "", None)
    return normalized, int((clean != present).sum())


def validate(frame: pd.DataFrame, spec: TableSpec, partition_date: dt.date, source: str) -> ValidationResult:
    """Split ``frame`` into the rows that satisfy ``spec`` and the rows to quarantine, with the reasons.

    Text columns are normalized first (see ``_normalize_text``; counted in ``values_normalized``), so a key
    that differs only in spaces or Unicode form is the duplicate it is. Timestamps follow ``_to_timestamps``.
    """
    rows_in = len(frame)
    _check_columns(frame, spec, source)
    raw = frame[list(spec.columns)].reset_index(drop=True)
    cleaned = raw.copy()
    values_normalized: dict[str, int] = {}
    for name, dtype in spec.columns.items():
        if dtype == "str":
            cleaned[name], changed = _normalize_text(_text_column(raw[name], name, spec, source))
            if changed:
                values_normalized[name] = changed
    typed = pd.DataFrame(
        {name: _coerce(cleaned[name], dtype, name in spec.date_columns) for name, dtype in spec.columns.items()}
    )
    failures = [_type_failures(cleaned, typed, spec), _null_failures(typed, spec)]
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
    if len(valid) + len(quarantine) != rows_in:  # cannot happen; if it ever does, no day is loaded short
        raise RuntimeError(f"{source}: {rows_in} rows in but {len(valid)} kept and {len(quarantine)} quarantined")
    counts = Counter(f"{row.column}:{row.check}" for row in failed.itertuples())
    return ValidationResult(
        table=spec.name,
        source=source,
        rows_in=rows_in,
        valid=valid.reset_index(drop=True),
        quarantine=quarantine,
        failures_by_check=dict(sorted(counts.items())),
        values_normalized=values_normalized,
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
