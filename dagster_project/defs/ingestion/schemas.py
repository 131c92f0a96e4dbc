"""The contract of every raw table, generated from the problem's declaration: a pandera schema plus what the lake
needs to know about the table.

The problem declares its raw tables as the dbt source ``raw`` (see the vocabulary at the top of the subscription
example's ``models/staging/_raw__sources.yml``): each column's ``data_type`` and checks, each table's key and the
columns that tie a row to its day. ``table_specs`` reads those declarations from the manifest's source nodes; a
missing or inconsistent one fails when the definitions load, naming the table and the column or field. What
depends on the partition being loaded (an event must fall on its own day) is added by ``TableSpec.schema_for``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow

from dagster_project.problem import DeclarationError
from dagster_project.settings import DBT_PROJECT_DIR, REPO_ROOT

TEXT, INT, FLOAT, TIMESTAMP = "str", "int64", "float64", "datetime64[ns]"
# dbt's (DuckDB's) names of the types a raw column may have, and the pandas dtype each is read as. Days and
# instants are both timestamps in pandas; a ``date`` column is stored as a calendar day (``arrow_schema``).
DATA_TYPES = {
    "varchar": TEXT,
    "text": TEXT,
    "string": TEXT,
    "bigint": INT,
    "integer": INT,
    "double": FLOAT,
    "date": TIMESTAMP,
    "timestamp": TIMESTAMP,
}
DATE = "date"

# The declaration's vocabulary: a table's meta and a column's meta.
TABLE_FIELDS = ("keys", "day_columns", "not_after_day", "absent_day", "min_volume_share")
COLUMN_FIELDS = ("nullable", "accepted_values", "min", "max", "greater_than", "less_than", "min_length", "max_length")
_BOUNDS = ("greater_than", "min", "less_than", "max")  # pandera's order (gt, ge, lt, le): the first failure is named
_LENGTHS = ("min_length", "max_length")


class AbsentDay(StrEnum):
    """What a day with no landing file of the table means."""

    empty = "empty"  # a day of no rows (a quiet day of cancellations)
    error = "error"  # a failed delivery: the run fails saying where the file was expected


@dataclass(frozen=True)
class TableSpec:
    """A raw table: its schema, its key and which columns are calendar days rather than instants."""

    name: str
    schema: pa.DataFrameSchema
    keys: tuple[str, ...]
    date_columns: tuple[str, ...]
    # Columns that must fall on the partition's own day: on it exactly, or (``not_after``) on or before it.
    on_partition_day: tuple[str, ...]
    not_after_partition_day: tuple[str, ...] = ()
    # A day must keep at least this share of the trailing days' median row count (see ``volume``); None for a
    # table where a day of few or no rows is normal (cancellations, customer updates).
    min_volume_share: float | None = None
    absent_day: AbsentDay = AbsentDay.error
    declared_in: str = ""  # the file that declares the table, for messages that send a person there

    @property
    def columns(self) -> dict[str, str]:
        """Column name to pandas dtype name, in the declared order."""
        return {name: str(column.dtype) for name, column in self.schema.columns.items()}

    def schema_for(self, partition_date: dt.date) -> pa.DataFrameSchema:
        """The table's schema plus the checks that tie each row to the day being loaded."""
        day = pd.Timestamp(partition_date)
        extra_checks: dict[str, list[pa.Check]] = {}
        for name in self.on_partition_day:
            check = pa.Check(lambda s, d=day: s.dt.normalize() == d, name=f"on_partition_day({day.date()})")
            extra_checks.setdefault(name, []).append(check)
        for name in self.not_after_partition_day:
            check = pa.Check(lambda s, d=day: s.dt.normalize() <= d, name=f"not_after_partition_day({day.date()})")
            extra_checks.setdefault(name, []).append(check)
        columns = self.schema.columns
        return self.schema.update_columns(
            {name: {"checks": [*columns[name].checks, *checks]} for name, checks in extra_checks.items()}
        )

    def arrow_schema(self) -> pa_arrow.Schema:
        """How the table is stored: calendar days as ``date32``, instants in microseconds (Spark reads those)."""
        fields = []
        for name, dtype in self.columns.items():
            if name in self.date_columns:
                arrow_type = pa_arrow.date32()
            elif dtype.startswith("datetime64"):
                arrow_type = pa_arrow.timestamp("us")
            elif dtype == INT:
                arrow_type = pa_arrow.int64()
            elif dtype == FLOAT:
                arrow_type = pa_arrow.float64()
            else:
                arrow_type = pa_arrow.string()
            fields.append(pa_arrow.field(name, arrow_type, nullable=self.schema.columns[name].nullable))
        return pa_arrow.schema(fields)


def table_specs(raw_table_nodes: Iterable[Mapping[str, Any]]) -> dict[str, TableSpec]:
    """The spec of every declared raw table (the manifest's source nodes of ``raw``), by name, in declared order."""
    specs = (table_spec(node) for node in raw_table_nodes)
    return {spec.name: spec for spec in specs}


def table_spec(node: Mapping[str, Any]) -> TableSpec:
    """The spec of one raw table, from its source node; a ``DeclarationError`` names what is wrong where."""
    declaration = _Declaration(node)
    columns = {name: declaration.column(name, column) for name, column in (node.get("columns") or {}).items()}
    if not columns:
        raise declaration.error("declares no columns")
    data_types = {name: str(column["data_type"]).lower() for name, column in node["columns"].items()}
    meta = declaration.table_meta()
    keys = declaration.column_list(meta, "keys", data_types)
    for key in keys:
        if columns[key].nullable:
            raise declaration.error(f"key column {key} is declared nullable: a key is always there")
    days = declaration.column_list(meta, "day_columns", data_types, days_only=True)
    if not days:
        raise declaration.error(
            "meta day_columns is missing: name the date or timestamp column(s) that tie a row to its partition day"
        )
    return TableSpec(
        name=declaration.table,
        schema=pa.DataFrameSchema(
            columns,
            strict=True,
            unique=list(keys) or None,
            # Keep the first of a duplicated key and quarantine the rest, as a replayed file would need.
            report_duplicates="exclude_first",
            name=declaration.table,
        ),
        keys=keys,
        date_columns=tuple(name for name, data_type in data_types.items() if data_type == DATE),
        on_partition_day=days,
        not_after_partition_day=declaration.column_list(meta, "not_after_day", data_types, days_only=True),
        min_volume_share=declaration.share(meta, "min_volume_share"),
        absent_day=declaration.absent_day(meta),
        declared_in=declaration.path,
    )


def _meta(node: Mapping[str, Any]) -> dict[str, Any]:
    # dbt keeps meta in config (and mirrors it at the top level); both places are read, as problem.py does.
    return {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}


def _shown_path(original_file_path: str) -> str:
    """The declaring file as a person finds it: from the repository root when it is inside, else absolute."""
    path = Path(original_file_path)
    path = (path if path.is_absolute() else DBT_PROJECT_DIR / path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


class _Declaration:
    """Reading one table's declaration, with every error naming the table, its file and the field at fault."""

    def __init__(self, node: Mapping[str, Any]) -> None:
        self.node = node
        self.table = str(node["name"])
        self.path = _shown_path(str(node.get("original_file_path") or ""))

    def error(self, message: str) -> DeclarationError:
        return DeclarationError(f"raw table {self.table} ({self.path}): {message}")

    def table_meta(self) -> dict[str, Any]:
        meta = _meta(self.node)
        # The source's own meta (dbt-duckdb's external_location, ...) is inherited by every table: not ours to judge.
        inherited = set(self.node.get("source_meta") or {})
        unknown = sorted(set(meta) - set(TABLE_FIELDS) - inherited)
        if unknown:
            raise self.error(f"unknown meta field(s) {', '.join(unknown)}; a table's are: {', '.join(TABLE_FIELDS)}")
        return meta

    def column_list(
        self, meta: Mapping[str, Any], field: str, data_types: Mapping[str, str], days_only: bool = False
    ) -> tuple[str, ...]:
        """The columns named by meta ``field`` (a name or a list of them): declared columns (of ``data_types``),
        and date or timestamp ones when ``days_only``."""
        value = meta.get(field) or []
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise self.error(f"meta {field} must be a column name or a list of them, got {value!r}")
        for name in names:
            if name not in data_types:
                raise self.error(f"meta {field} names column {name}, which is not among its declared columns")
            if days_only and DATA_TYPES[data_types[name]] != TIMESTAMP:
                raise self.error(f"meta {field} names column {name}, a {data_types[name]}: not a date or timestamp")
        return tuple(names)

    def share(self, meta: Mapping[str, Any], field: str) -> float | None:
        value = meta.get(field)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise self.error(f"meta {field} must be a share above 0 and at most 1, got {value!r}")
        return float(value)

    def absent_day(self, meta: Mapping[str, Any]) -> AbsentDay:
        value = meta.get("absent_day", AbsentDay.error.value)
        try:
            return AbsentDay(value)
        except ValueError:
            choices = " or ".join(a.value for a in AbsentDay)
            raise self.error(f"meta absent_day must be {choices}, got {value!r}") from None

    def column(self, name: str, column: Mapping[str, Any]) -> pa.Column:
        """The pandera column of one declared column: its type, nullability and checks."""
        where = f"column {name}"
        data_type = str(column.get("data_type") or "").lower()
        if data_type not in DATA_TYPES:
            got = f"data_type {data_type!r} is not" if data_type else "has no data_type; it must be"
            raise self.error(f"{where} {got} one of {', '.join(DATA_TYPES)}")
        dtype = DATA_TYPES[data_type]
        meta = _meta(column)
        unknown = sorted(set(meta) - set(COLUMN_FIELDS))
        if unknown:
            raise self.error(
                f"{where}: unknown meta field(s) {', '.join(unknown)}; a column's are: {', '.join(COLUMN_FIELDS)}"
            )
        nullable = meta.get("nullable", False)
        if not isinstance(nullable, bool):
            raise self.error(f"{where}: meta nullable must be true or false, got {nullable!r}")
        checks = [*self._bound_checks(where, data_type, dtype, meta), *self._value_checks(where, dtype, meta)]
        return pa.Column(dtype, checks=checks, nullable=nullable, name=name)

    def _bound_checks(self, where: str, data_type: str, dtype: str, meta: Mapping[str, Any]) -> list[pa.Check]:
        bounds = {field: meta[field] for field in _BOUNDS if field in meta}
        if bounds and dtype == TEXT:
            raise self.error(
                f"{where}: meta {', '.join(bounds)} apply to numbers and days; text has min_length and max_length"
            )
        for field, value in bounds.items():
            if dtype == TIMESTAMP:
                try:
                    bounds[field] = pd.Timestamp(str(value))
                except ValueError:
                    raise self.error(f"{where}: meta {field} must be a day as ISO text, got {value!r}") from None
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise self.error(f"{where}: meta {field} must be a number, got {value!r}")
        lows = [(field, bounds[field]) for field in ("greater_than", "min") if field in bounds]
        highs = [(field, bounds[field]) for field in ("less_than", "max") if field in bounds]
        for low_field, low in lows:
            for high_field, high in highs:
                if low > high or (low == high and (low_field, high_field) != ("min", "max")):
                    raise self.error(
                        f"{where}: meta {low_field} {meta[low_field]} and {high_field} "
                        f"{meta[high_field]} leave no value ({data_type}) that passes"
                    )
        checks = {"greater_than": pa.Check.gt, "min": pa.Check.ge, "less_than": pa.Check.lt, "max": pa.Check.le}
        return [checks[field](value) for field, value in bounds.items()]

    def _value_checks(self, where: str, dtype: str, meta: Mapping[str, Any]) -> list[pa.Check]:
        checks = []
        if "accepted_values" in meta:
            values = meta["accepted_values"]
            kind = str if dtype == TEXT else int | float
            if (
                not isinstance(values, list)
                or not values
                or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values)
            ):
                hint = " (quote them: YAML reads yes, no, on, off as true and false)" if dtype == TEXT else ""
                raise self.error(
                    f"{where}: meta accepted_values must be a list of {dtype} values{hint}, got {values!r}"
                )
            checks.append(pa.Check.isin(values))
        lengths = {field: meta[field] for field in _LENGTHS if field in meta}
        if lengths:
            if dtype != TEXT:
                raise self.error(f"{where}: meta {', '.join(lengths)} apply to text columns only")
            for field, value in lengths.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise self.error(f"{where}: meta {field} must be a whole number of characters, got {value!r}")
            if lengths.get("min_length", 0) > lengths.get("max_length", float("inf")):
                raise self.error(
                    f"{where}: meta min_length {lengths['min_length']} is above max_length {lengths['max_length']}"
                )
            checks.append(pa.Check.str_length(lengths.get("min_length"), lengths.get("max_length")))
        return checks
