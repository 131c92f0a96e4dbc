"""The contract of every raw table: a pandera ``DataFrameModel`` plus what the lake needs to know about it.

The models hold the checks (types, nullability, ranges, allowed values, key uniqueness). What depends on the
partition being loaded (an event must fall on its own day) is added by ``TableSpec.schema_for``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa
import pyarrow as pa_arrow
from pandera.typing import Series

EARLIEST_DATE = pd.Timestamp("1990-01-01")


class Customers(pa.DataFrameModel):
    """A customer record as of ``updated_at``: sign-ups, and later changes of plan or price."""

    customer_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    signup_date: Series[pd.Timestamp] = pa.Field(ge=EARLIEST_DATE)
    plan: Series[str] = pa.Field(isin=["basic", "standard", "premium"])
    contract: Series[str] = pa.Field(isin=["monthly", "annual"])
    monthly_price: Series[float] = pa.Field(gt=0, le=1_000)
    region: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    # Free text on purpose: a new channel is a shift for drift monitoring to see, not bad data.
    acquisition_channel: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    payment_method: Series[str] = pa.Field(isin=["card", "paypal", "direct_debit"])
    updated_at: Series[pd.Timestamp]

    class Config:
        strict = True
        unique = ["customer_id"]


class ActivityEvents(pa.DataFrameModel):
    """What one customer did on one day."""

    customer_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    event_date: Series[pd.Timestamp]
    logins: Series[int] = pa.Field(ge=0, le=1_000)
    sessions: Series[int] = pa.Field(ge=0, le=5_000)
    minutes_active: Series[float] = pa.Field(ge=0, le=1_440)
    purchases: Series[int] = pa.Field(ge=0, le=1_000)
    purchase_amount: Series[float] = pa.Field(ge=0, le=100_000)
    support_tickets: Series[int] = pa.Field(ge=0, le=100)
    payment_failures: Series[int] = pa.Field(ge=0, le=100)

    class Config:
        strict = True
        unique = ["customer_id", "event_date"]


class Cancellations(pa.DataFrameModel):
    """A customer's cancellation, effective on ``cancel_date``."""

    customer_id: Series[str] = pa.Field(str_length={"min_value": 1, "max_value": 64})
    cancel_date: Series[pd.Timestamp]
    cancel_reason: Series[str] = pa.Field(nullable=True, str_length={"max_value": 64})
    cancelled_at: Series[pd.Timestamp]

    class Config:
        strict = True
        unique = ["customer_id"]


@dataclass(frozen=True)
class TableSpec:
    """A raw table: its model, its key and which columns are calendar days rather than instants."""

    name: str
    model: type[pa.DataFrameModel]
    keys: tuple[str, ...]
    date_columns: tuple[str, ...]
    # Columns that must fall on the partition's own day: on it exactly, or (``not_after``) on or before it.
    on_partition_day: tuple[str, ...]
    not_after_partition_day: tuple[str, ...] = ()
    # A day must keep at least this share of the trailing days' median row count (see ``volume``); None for a
    # table where a day of few or no rows is normal (cancellations, customer updates).
    min_volume_share: float | None = None

    @property
    def columns(self) -> dict[str, str]:
        """Column name to pandas dtype name, in the declared order."""
        return {name: str(column.dtype) for name, column in self.model.to_schema().columns.items()}

    def schema_for(self, partition_date: dt.date) -> pa.DataFrameSchema:
        """The model's schema plus the checks that tie each row to the day being loaded."""
        day = pd.Timestamp(partition_date)
        schema = self.model.to_schema()
        # Keep the first of a duplicated key and quarantine the rest, as a replayed file would need.
        schema.report_duplicates = "exclude_first"
        extra_checks: dict[str, list[pa.Check]] = {}
        for name in self.on_partition_day:
            check = pa.Check(lambda s, d=day: s.dt.normalize() == d, name=f"on_partition_day({day.date()})")
            extra_checks.setdefault(name, []).append(check)
        for name in self.not_after_partition_day:
            check = pa.Check(lambda s, d=day: s.dt.normalize() <= d, name=f"not_after_partition_day({day.date()})")
            extra_checks.setdefault(name, []).append(check)
        return schema.update_columns(
            {name: {"checks": [*schema.columns[name].checks, *checks]} for name, checks in extra_checks.items()}
        )

    def arrow_schema(self) -> pa_arrow.Schema:
        """How the table is stored: calendar days as ``date32``, instants in microseconds (Spark reads those)."""
        fields = []
        for name, dtype in self.columns.items():
            if name in self.date_columns:
                arrow_type = pa_arrow.date32()
            elif dtype.startswith("datetime64"):
                arrow_type = pa_arrow.timestamp("us")
            elif dtype == "int64":
                arrow_type = pa_arrow.int64()
            elif dtype == "float64":
                arrow_type = pa_arrow.float64()
            else:
                arrow_type = pa_arrow.string()
            nullable = self.model.to_schema().columns[name].nullable
            fields.append(pa_arrow.field(name, arrow_type, nullable=nullable))
        return pa_arrow.schema(fields)


RAW_TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            name="customers",
            model=Customers,
            keys=("customer_id",),
            date_columns=("signup_date",),
            on_partition_day=("updated_at",),
            not_after_partition_day=("signup_date",),
        ),
        TableSpec(
            name="activity_events",
            model=ActivityEvents,
            keys=("customer_id", "event_date"),
            date_columns=("event_date",),
            on_partition_day=("event_date",),
            min_volume_share=0.5,  # a row per customer active that day: weekends and churn move it far less
        ),
        TableSpec(
            name="cancellations",
            model=Cancellations,
            keys=("customer_id",),
            date_columns=("cancel_date",),
            on_partition_day=("cancel_date", "cancelled_at"),
        ),
    )
}
