"""A corpus of bad input, as data: each case is a landing file that a user could drop, and how it must end.

Every case ends in exactly one way: its rows kept, some rows quarantined with the reasons named, or the run
failing with an error that names the file (and the line or column at fault). Each goes through the real
landing path: the file is written where the raw asset looks for it and the asset is materialized by Dagster;
the counts are read back from the materialization's metadata and the rows from the lake, and rows in must
equal rows kept plus rows quarantined exactly.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_project import asset_keys
from dagster_project.defs import ingestion
from dagster_project.resources import build_resources
from dagster_project.settings import Settings, Source

DAY = dt.date(2025, 3, 1)
DST_DAY = dt.date(2025, 3, 30)  # Europe moves its clocks: one file, two UTC offsets

EVENT_COLUMNS = (
    "customer_id",
    "event_date",
    "logins",
    "sessions",
    "minutes_active",
    "purchases",
    "purchase_amount",
    "support_tickets",
    "payment_failures",
)
CUSTOMER_COLUMNS = (
    "customer_id",
    "signup_date",
    "plan",
    "contract",
    "monthly_price",
    "region",
    "acquisition_channel",
    "payment_method",
    "updated_at",
)
CANCEL_COLUMNS = ("customer_id", "cancel_date", "cancel_reason", "cancelled_at")
GOOD_EVENT = dict(zip(EVENT_COLUMNS, ("C1", "2025-03-01", "2", "3", "41.5", "0", "0.0", "0", "0"), strict=True))
GOOD_CUSTOMER = dict(
    zip(
        CUSTOMER_COLUMNS,
        ("C1", "2024-05-01", "basic", "monthly", "9.99", "north", "organic", "card", "2025-03-01T10:00:00"),
        strict=True,
    )
)
GOOD_CANCEL = dict(zip(CANCEL_COLUMNS, ("C1", "2025-03-01", "price", "2025-03-01T10:00:00"), strict=True))
TABLE_COLUMNS = {"activity_events": EVENT_COLUMNS, "customers": CUSTOMER_COLUMNS, "cancellations": CANCEL_COLUMNS}
GOOD = {"activity_events": GOOD_EVENT, "customers": GOOD_CUSTOMER, "cancellations": GOOD_CANCEL}


def row(table: str, sep: str = ",", **values: str) -> str:
    """One CSV line of ``table``: a valid row with ``values`` changed."""
    return sep.join({**GOOD[table], **values}.values())


def csv_file(table: str, *lines: str, sep: str = ",") -> str:
    return "\n".join([sep.join(TABLE_COLUMNS[table]), *lines]) + "\n"


def events(*lines: str) -> str:
    return csv_file("activity_events", *lines)


def ev(**values: str) -> str:
    return row("activity_events", **values)


def cancels(*lines: str) -> str:
    return csv_file("cancellations", *lines)


def cx(**values: str) -> str:
    return row("cancellations", **values)


def customers(*lines: str) -> str:
    return csv_file("customers", *lines)


def cu(**values: str) -> str:
    return row("customers", **values)


def parquet(table: str, **columns: object) -> pd.DataFrame:
    """A Parquet landing frame of ``table``: two valid rows, with ``columns`` replaced (None drops one)."""
    base = {name: [GOOD[table][name], GOOD[table][name].replace("C1", "C2")] for name in TABLE_COLUMNS[table]}
    frame = pd.DataFrame(base)
    for name in ("logins", "sessions", "purchases", "support_tickets", "payment_failures"):
        if name in frame:
            frame[name] = frame[name].astype("int64")
    for name in ("minutes_active", "purchase_amount", "monthly_price"):
        if name in frame:
            frame[name] = frame[name].astype("float64")
    for name in ("event_date", "cancel_date", "signup_date", "updated_at", "cancelled_at"):
        if name in frame:
            frame[name] = pd.to_datetime(frame[name])
    for name, values in columns.items():
        if values is None:
            frame = frame.drop(columns=name)
        else:
            frame[name] = values
    return frame


@dataclass(frozen=True)
class Case:
    """A landing file and how it must end: ``error`` (a pattern the failure message matches), or the rows kept
    and the ``failed_checks`` of each quarantined row in row order."""

    id: str
    table: str
    content: str | bytes | pd.DataFrame  # text is written as UTF-8, bytes as they are, a frame as Parquet
    kept: int = 0
    quarantined: tuple[str, ...] = ()
    error: str | None = None
    day: dt.date = DAY
    kept_values: dict[str, list[object]] = field(default_factory=dict)  # column -> the kept rows' values
    normalized: dict[str, int] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        return "error" if self.error else "quarantined" if self.quarantined else "kept"


TYPE_INT = "logins:type(int64)"
CASES = [
    # Encodings: UTF-8 with or without a mark, UTF-16 with a mark; others refused naming line and column.
    Case("utf8_bom", "activity_events", codecs.BOM_UTF8 + events(ev(), ev(customer_id="C2")).encode(), kept=2),
    Case(
        "latin1",
        "customers",
        customers(cu(), cu(customer_id="C2", region="Zürich")).encode("latin-1"),
        error=r"2025-03-01\.csv: not valid UTF-8 \(byte 0xfc on line 3, column region\)",
    ),
    Case(
        "windows1252_curly_quote",
        "cancellations",
        cancels(cx(cancel_reason="didn’t use it")).encode("cp1252"),
        error=r"2025-03-01\.csv: not valid UTF-8 \(byte 0x92 on line 2, column cancel_reason\)",
    ),
    Case("utf16_le_bom", "cancellations", cancels(cx(), cx(customer_id="C2")).encode("utf-16"), kept=2),
    Case(
        "utf16_be_bom",
        "cancellations",
        codecs.BOM_UTF16_BE + cancels(cx(), cx(customer_id="Zoë")).encode("utf-16-be"),
        kept=2,
        kept_values={"customer_id": ["C1", "Zoë"]},
    ),
    Case(
        "utf16_without_mark",
        "cancellations",
        cancels(cx()).encode("utf-16-le"),
        error=r"2025-03-01\.csv: NUL characters from line 1 on: UTF-16 without a byte-order mark",
    ),
    Case(
        "utf32_with_mark",
        "cancellations",
        cancels(cx()).encode("utf-32"),
        error=r"2025-03-01\.csv: NUL characters from line 1 on: UTF-16 without a byte-order mark, UTF-32",
    ),
    # Separators: semicolon and tab found from the header; a decimal comma is no number.
    Case("semicolon", "cancellations", csv_file("cancellations", row("cancellations", sep=";"), sep=";"), kept=1),
    Case(
        "tab",
        "activity_events",
        csv_file("activity_events", row("activity_events", sep="\t"), sep="\t"),
        kept=1,
        kept_values={"minutes_active": [41.5]},
    ),
    Case(
        "semicolon_decimal_comma",
        "customers",
        csv_file("customers", row("customers", sep=";", monthly_price="9,99"), sep=";"),
        quarantined=("monthly_price:type(float64)",),
    ),
    # UTC offsets: zoned values convert to UTC, naive ones are UTC; a calendar day keeps the day written.
    Case(
        "two_offsets_on_a_dst_day",
        "cancellations",
        cancels(
            cx(cancel_date="2025-03-30", cancelled_at="2025-03-30T01:30:00+01:00"),
            cx(customer_id="C2", cancel_date="2025-03-30", cancelled_at="2025-03-30T03:30:00+02:00"),
        ),
        day=DST_DAY,
        kept=2,
        kept_values={"cancelled_at": [pd.Timestamp("2025-03-30 00:30"), pd.Timestamp("2025-03-30 01:30")]},
    ),
    Case(
        "naive_and_zoned_mixed",
        "cancellations",
        cancels(
            cx(cancelled_at="2025-03-01T10:00:00+01:00"),
            cx(customer_id="C2", cancelled_at="2025-03-01T10:00:00"),
            cx(customer_id="C3", cancelled_at="2025-03-01T10:00:00Z"),
        ),
        kept=3,
        kept_values={"cancelled_at": [pd.Timestamp(f"2025-03-01 {h}:00") for h in ("09", "10", "10")]},
    ),
    Case(
        "offset_moves_the_instant_to_the_next_utc_day",
        "cancellations",
        cancels(cx(cancelled_at="2025-03-01T23:30:00-05:00")),
        quarantined=("cancelled_at:on_partition_day(2025-03-01)",),
    ),
    Case(
        "calendar_day_with_an_offset_keeps_its_day",
        "activity_events",
        events(ev(event_date="2025-03-01T00:00:00+01:00")),
        kept=1,
    ),
    Case(
        "day_month_order_ambiguous",
        "activity_events",
        events(ev(event_date="03/01/2025")),
        quarantined=("event_date:type(datetime64[ns])",),
    ),
    # Huge and non-finite values: quarantined, never a crash and never a rounded number.
    Case(
        "count_1e20",
        "activity_events",
        events(ev(), ev(customer_id="C2", logins="1e20")),
        kept=1,
        quarantined=(TYPE_INT,),
    ),
    Case("count_of_23_digits", "activity_events", events(ev(logins="1" + "0" * 22)), quarantined=(TYPE_INT,)),
    Case(
        "count_at_int64_max",
        "activity_events",
        events(ev(logins=str(2**63 - 1))),
        quarantined=("logins:less_than_or_equal_to(1000)",),
    ),
    Case(
        "float_beyond_double",
        "activity_events",
        events(ev(minutes_active="1e400")),
        quarantined=("minutes_active:type(float64)",),
    ),
    Case(
        "infinite_amount",
        "activity_events",
        events(ev(purchase_amount="inf")),
        quarantined=("purchase_amount:less_than_or_equal_to(100000)",),
    ),
    Case("count_nan", "activity_events", events(ev(logins="NaN")), quarantined=(TYPE_INT,)),
    Case("count_with_underscore", "activity_events", events(ev(logins="1_0")), quarantined=(TYPE_INT,)),
    Case("count_written_as_2_0", "activity_events", events(ev(logins="2.0")), kept=1, kept_values={"logins": [2]}),
    Case("count_with_spaces", "activity_events", events(ev(logins=" 3 ")), kept=1, kept_values={"logins": [3]}),
    # Ragged rows: the row is quarantined with its field count, the rest of the file goes on.
    Case(
        "row_with_too_many_fields",
        "activity_events",
        events(ev(), ev(customer_id="C2") + ",7"),
        kept=1,
        quarantined=("*:field_count(9)",),
    ),
    Case(
        "row_with_too_few_fields",
        "cancellations",
        cancels(cx(), "C2,2025-03-01,2025-03-01T10:00:00"),
        kept=1,
        quarantined=("*:field_count(4)",),
    ),
    Case(
        "row_with_a_trailing_separator",
        "cancellations",
        cancels(cx() + ","),
        quarantined=("*:field_count(4)",),
    ),
    Case("blank_lines_are_no_rows", "cancellations", cancels(cx(), "", "   ", cx(customer_id="C2"), ""), kept=2),
    Case(
        "blank_lines_before_a_semicolon_header",
        "cancellations",
        "\n\n" + csv_file("cancellations", row("cancellations", sep=";"), sep=";"),
        kept=1,
    ),
    # Ids of other types: text stays text as written; Parquet integers are written out exactly; floats refused.
    Case(
        "ids_with_leading_zeros",
        "cancellations",
        cancels(cx(customer_id="007"), cx(customer_id="0042")),
        kept=2,
        kept_values={"customer_id": ["007", "0042"]},
    ),
    Case(
        "float_looking_ids_in_csv_stay_as_written",
        "cancellations",
        cancels(cx(customer_id="1.0"), cx(customer_id="1")),
        kept=2,
        kept_values={"customer_id": ["1.0", "1"]},
    ),
    Case(
        "parquet_integer_ids",
        "cancellations",
        parquet("cancellations", customer_id=pd.array([1, 2**62 + 1], dtype="int64")),
        kept=2,
        kept_values={"customer_id": ["1", str(2**62 + 1)]},
    ),
    Case(
        "parquet_integer_ids_with_a_null",
        "cancellations",
        parquet("cancellations", customer_id=pd.array([1, None], dtype="Int64")),
        kept=1,
        quarantined=("customer_id:not_nullable",),
        kept_values={"customer_id": ["1"]},
    ),
    Case(
        "parquet_float_ids",
        "cancellations",
        parquet("cancellations", customer_id=[1.0, 3.0]),
        error=r"2025-03-01\.parquet: column customer_id holds float values \(such as 1\.0\)",
    ),
    Case(
        "parquet_text_ids_with_leading_zeros",
        "cancellations",
        parquet("cancellations", customer_id=["007", "0042"]),
        kept=2,
        kept_values={"customer_id": ["007", "0042"]},
    ),
    # Unicode normal forms and surrounding spaces: one value, so a second spelling of a key is a duplicate.
    Case(
        "key_in_nfc_and_nfd",
        "cancellations",
        cancels(cx(customer_id="Jos\u00e9"), cx(customer_id="Jose\u0301")),
        kept=1,
        quarantined=("customer_id:multiple_fields_uniqueness",),
        kept_values={"customer_id": ["Jos\u00e9"]},
        normalized={"customer_id": 1},
    ),
    Case(
        "key_with_surrounding_spaces",
        "cancellations",
        cancels(cx(), cx(customer_id=" C1 ")),
        kept=1,
        quarantined=("customer_id:multiple_fields_uniqueness",),
        normalized={"customer_id": 1},
    ),
    Case(
        "category_in_nfd_and_with_spaces",
        "customers",
        customers(cu(region="Zu\u0308rich", plan=" basic")),
        kept=1,
        kept_values={"region": ["Z\u00fcrich"], "plan": ["basic"]},
        normalized={"plan": 1, "region": 1},
    ),
    Case(
        "blank_key",
        "cancellations",
        cancels(cx(customer_id="   ")),
        quarantined=("customer_id:not_nullable",),
        normalized={"customer_id": 1},
    ),
    # Quotes: doubled quotes and separators or newlines inside quotes are values; an open quote is an error.
    Case(
        "nested_quotes",
        "cancellations",
        cancels(cx(cancel_reason='"said ""too expensive"", then left"')),
        kept=1,
        kept_values={"cancel_reason": ['said "too expensive", then left']},
    ),
    Case(
        "newline_inside_quotes",
        "cancellations",
        cancels(cx(cancel_reason='"price\nservice"'), cx(customer_id="C2")),
        kept=2,
        kept_values={"cancel_reason": ["price\nservice", "price"]},
    ),
    Case(
        "quote_left_open",
        "cancellations",
        cancels(cx(), cx(customer_id="C2", cancel_reason='"price'), cx(customer_id="C3")),
        error=r"2025-03-01\.csv: not a readable CSV file: the record starting on line 3",
    ),
    Case(
        "quote_inside_an_unquoted_value",
        "cancellations",
        cancels(cx(cancel_reason='it"s slow')),
        kept=1,
        kept_values={"cancel_reason": ['it"s slow']},
    ),
    # A file of the wrong day or of another table.
    Case(
        "file_of_the_next_day",
        "activity_events",
        events(ev(event_date="2025-03-02"), ev(customer_id="C2", event_date="2025-03-02")),
        quarantined=("event_date:on_partition_day(2025-03-01)",) * 2,
    ),
    Case(
        "customer_update_of_the_day_before",
        "customers",
        customers(cu(), cu(customer_id="C2", updated_at="2025-02-28T23:59:59")),
        kept=1,
        quarantined=("updated_at:on_partition_day(2025-03-01)",),
    ),
    Case(
        "file_of_another_table",
        "activity_events",
        customers(cu()),
        error=r"2025-03-01\.csv: missing required column\(s\) event_date, .* are those of table customers",
    ),
    # Schema drift in Parquet.
    Case(
        "parquet_int_column_as_text",
        "activity_events",
        parquet("activity_events", logins=["2", "many"]),
        kept=1,
        quarantined=(TYPE_INT,),
        kept_values={"logins": [2]},
    ),
    Case(
        "parquet_int_column_as_float_with_a_null",
        "activity_events",
        parquet("activity_events", logins=[2.0, None]),
        kept=1,
        quarantined=("logins:not_nullable",),
    ),
    Case(
        "parquet_bool_in_a_count",
        "activity_events",
        parquet("activity_events", logins=[True, False]),
        quarantined=(TYPE_INT,) * 2,
    ),
    Case(
        "parquet_zoned_timestamps",
        "cancellations",
        parquet("cancellations", cancelled_at=pd.to_datetime(["2025-03-01 10:00"] * 2).tz_localize("Europe/Berlin")),
        kept=2,
        kept_values={"cancelled_at": [pd.Timestamp("2025-03-01 09:00")] * 2},
    ),
    Case(
        "parquet_missing_column",
        "activity_events",
        parquet("activity_events", payment_failures=None),
        error=r"2025-03-01\.parquet: missing required column\(s\) payment_failures",
    ),
    Case(
        "parquet_extra_column",
        "activity_events",
        parquet("activity_events", coupon=["A", "B"]),
        error=r"2025-03-01\.parquet: unexpected column\(s\) coupon",
    ),
    # Empty files, keys: duplicate, null; the header itself.
    Case("empty_file", "cancellations", b"", error=r"2025-03-01\.csv: the file is empty"),
    Case("blank_file", "cancellations", "\n  \n", error=r"2025-03-01\.csv: the file is empty"),
    Case("header_only", "cancellations", cancels()),
    Case(
        "duplicate_key",
        "activity_events",
        events(ev(), ev(logins="9")),
        kept=1,
        quarantined=("customer_id:multiple_fields_uniqueness; event_date:multiple_fields_uniqueness",),
        kept_values={"logins": [2]},
    ),
    Case(
        "null_keys",
        "activity_events",
        events(ev(customer_id=""), ev(event_date="")),
        quarantined=("customer_id:not_nullable", "event_date:not_nullable"),
    ),
    Case(
        "repeated_header_column",
        "cancellations",
        "customer_id,cancel_date,cancel_reason,cancelled_at,cancel_reason\n",
        error=r"2025-03-01\.csv: column\(s\) cancel_reason appear more than once in the header",
    ),
    Case(
        "header_with_spaces",
        "cancellations",
        " customer_id , cancel_date,cancel_reason,cancelled_at\n" + cx() + "\n",
        kept=1,
    ),
]


def _write(settings: Settings, case: Case) -> Path:
    suffix = ".parquet" if isinstance(case.content, pd.DataFrame) else ".csv"
    path = Path(settings.landing_root) / case.table / f"{case.day}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(case.content, pd.DataFrame):
        pq.write_table(pa.Table.from_pandas(case.content, preserve_index=False), path)
    elif isinstance(case.content, str):
        path.write_text(case.content, encoding="utf-8")
    else:
        path.write_bytes(case.content)
    return path


def test_the_corpus_covers_every_ending() -> None:
    outcomes = Counter(case.outcome for case in CASES)
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)
    assert min(outcomes.values()) >= 10, outcomes


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_ends_kept_quarantined_or_in_a_named_error(case: Case, settings: Settings) -> None:
    settings = settings.model_copy(update={"source": Source.landing})
    path = _write(settings, case)
    asset = next(a for a in ingestion.build_defs(settings).assets if a.key == asset_keys.raw_table(case.table))
    result = dg.materialize(
        [asset], partition_key=case.day.isoformat(), resources=build_resources(settings), raise_on_error=False
    )
    if case.error:
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
        message = failure.step_failure_data.error.cause.message
        assert str(path) in message
        assert re.search(case.error, message), message
        return
    assert result.success
    (event,) = result.get_asset_materialization_events()
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert (meta["rows_kept"], meta["rows_quarantined"]) == (case.kept, len(case.quarantined))
    assert meta["rows_in"] == case.kept + len(case.quarantined)
    assert meta["values_normalized"] == case.normalized
    partition = f"date={case.day}"
    kept = pd.read_parquet(settings.lake_root / "raw" / case.table / partition)
    quarantine = pd.read_parquet(settings.lake_root / "quarantine" / case.table / partition)
    assert len(kept) == case.kept
    assert quarantine.sort_values("row_number")["failed_checks"].tolist() == list(case.quarantined)
    assert (quarantine["source"] == str(path)).all()
    for column, values in case.kept_values.items():
        actual = kept[column].tolist()
        if isinstance(values[0], pd.Timestamp):
            actual = [pd.Timestamp(v) for v in actual]
        assert actual == values, column
