"""Splitting a raw table into valid rows and quarantined rows, with exact accounting.

A problem with the whole file (a missing or unexpected column, a float id column; reading problems are in
``landing``) is a ``RawInputError`` naming the file and the column: nothing of such a file is loaded. A problem
with a row (a value of the wrong type, a null key, a duplicate, a value out of range, the wrong number of
fields) sends that row to quarantine with the failed checks and columns named; the other rows go on. Every
input row ends in exactly one of the two, and rows in = kept + quarantined is checked on every call.

Before the checks, text is normalized (``_normalize_text``), counts are read exactly (``_to_int64``) and
timestamps are read by one rule for time zones (``_to_timestamps``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa

from dagster_project.defs.ingestion.landing import RAGGED_FIELDS, RawInputError
from dagster_project.defs.ingestion.schemas import TableSpec

WHOLE_ROW = "*"  # the failed "column" of a failure that concerns the whole row (its field count)

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


def _check_columns(frame: pd.DataFrame, spec: TableSpec, source: str, tables: Iterable[TableSpec]) -> None:
    declared = list(spec.columns)
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        others = [t.name for t in tables if t.name != spec.name and set(t.columns) == set(frame.columns)]
        hint = f"; the columns are those of table {others[0]}: a file in the wrong folder?" if others else ""
        raise RawInputError(
            f"{source}: missing required column(s) {', '.join(missing)} of table {spec.name}; "
            f"expected columns: {', '.join(declared)}{hint}"
        )
    unexpected = [str(c) for c in frame.columns if c not in declared]
    if unexpected:
        raise RawInputError(
            f"{source}: unexpected column(s) {', '.join(unexpected)} in table {spec.name}; "
            f"a new column is a schema change: declare it in {spec.declared_in}"
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
    objects = values.astype(object)
    numbers = np.zeros(len(objects), dtype="int64")
    read = np.zeros(len(objects), dtype=bool)
    plain = objects.str.fullmatch(_PLAIN_INT, na=False).to_numpy(dtype=bool)  # False for anything not text
    numbers[plain] = pd.to_numeric(objects[plain].str.strip()).to_numpy(dtype="int64")
    read[plain] = True
    for position in np.flatnonzero(~plain & objects.notna().to_numpy()):  # the rare rest, one by one
        number = _exact_int(objects.iloc[position])
        if number is not None:
            numbers[position], read[position] = number, True
    return pd.Series(pd.arrays.IntegerArray(numbers, ~read), index=values.index)


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
        text = objects.str.strip()  # null for anything not text
        if is_date:
            text = text.str.replace(_ZONE_AFTER_TIME, r"\1", regex=True)
        # Zoned and naive values are parsed apart: in one call pandas gives a naive value the offset of the
        # zoned value before it, silently.
        zoned = text.str.match(_ZONE_AFTER_TIME, na=False).astype(bool)
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
        for part in (zoned, ~zoned):
            if part.any():
                read = pd.to_datetime(text[part], errors="coerce", format="ISO8601", utc=True)
                parsed[part] = read.dt.tz_localize(None)
        # Calendar days from Parquet arrive as ``datetime.date``, which is no text.
        days = objects[text.isna() & objects.notna()].map(lambda v: isinstance(v, dt.date)).astype(bool)
        if days.any():
            parsed[days[days].index] = pd.to_datetime(objects[days[days].index])
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
    example = example.item() if isinstance(example, np.generic) else example  # 1.0, not np.float64(1.0)
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


def _whole_number_types(spec: TableSpec) -> dict[str, str]:
    """The dtype of each whole-number column once read: int64, but pandas' nullable Int64 for a column declared
    nullable, so that its blanks stay blanks (int64 cannot hold one)."""
    columns = spec.schema.columns
    return {
        name: "Int64" if columns[name].nullable else "int64" for name, dtype in spec.columns.items() if dtype == "int64"
    }


def validate(
    frame: pd.DataFrame, spec: TableSpec, partition_date: dt.date, source: str, tables: Iterable[TableSpec] = ()
) -> ValidationResult:
    """Split ``frame`` into the rows that satisfy ``spec`` and the rows to quarantine, with the reasons.

    ``tables``, the problem's other raw tables, let a file whose columns are another table's be named as a file in
    the wrong folder.

    Text columns are normalized first (see ``_normalize_text``; counted in ``values_normalized``), so a key
    that differs only in spaces or Unicode form is the duplicate it is. Timestamps follow ``_to_timestamps``.
    """
    rows_in = len(frame)
    frame = frame.reset_index(drop=True)
    ragged = frame.pop(RAGGED_FIELDS).dropna() if RAGGED_FIELDS in frame.columns else pd.Series(dtype=object)
    _check_columns(frame, spec, source, tables)
    # Rows of the wrong field count go straight to quarantine; the others are read and checked.
    raw = frame[list(spec.columns)].drop(index=ragged.index)
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
    field_count = f"field_count({len(spec.columns)})"
    failures.append(
        pd.DataFrame(
            [
                {"index": i, "column": WHOLE_ROW, "check": field_count, "failure_case": len(json.loads(v))}
                for i, v in ragged.items()
            ],
            columns=["index", "column", "check", "failure_case"],
        )
    )
    candidates = typed.drop(index=sorted(set_aside)).astype(_whole_number_types(spec))
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
    valid = typed.drop(index=sorted(set(bad_rows) - set(ragged.index)))  # ragged rows were never typed
    valid = valid.astype(_whole_number_types(spec))
    quarantine = _quarantine_rows(frame, ragged, failed, bad_rows, source)
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
    columns = spec.schema.columns
    failures = []
    for name in spec.columns:
        if columns[name].nullable:
            continue
        missing = typed[name].isna()
        failures += [
            {"index": i, "column": name, "check": "not_nullable", "failure_case": None} for i in missing[missing].index
        ]
    return pd.DataFrame(failures, columns=["index", "column", "check", "failure_case"])


def _quarantine_rows(
    raw: pd.DataFrame, ragged: pd.Series, failed: pd.DataFrame, bad_rows: list[int], source: str
) -> pd.DataFrame:
    """One row per quarantined input row; ``record`` is the row as it arrived: a JSON object of its columns,
    or for a row of the wrong field count the JSON array of its fields."""
    if not bad_rows:
        return QUARANTINE_SCHEMA.empty_table().to_pandas()
    grouped = failed.sort_values(["index", "column"]).groupby("index")
    rows = []
    for position, group in grouped:
        if position in ragged.index:
            record = ragged[position]
        else:
            record = json.dumps({k: (None if pd.isna(v) else str(v)) for k, v in raw.loc[position].items()})
        rows.append(
            {
                "row_number": int(position),
                "failed_columns": ", ".join(group["column"].astype(str)),
                "failed_checks": "; ".join(f"{c}:{k}" for c, k in zip(group["column"], group["check"], strict=True)),
                "failure_values": json.dumps([None if pd.isna(v) else str(v) for v in group["failure_case"]]),
                "record": record,
                "source": source,
            }
        )
    return pd.DataFrame(rows, columns=QUARANTINE_SCHEMA.names)
