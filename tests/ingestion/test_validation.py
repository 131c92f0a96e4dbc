"""A corpus of bad input: every kind ends quarantined with a named reason, or in an error naming file and column.

Each case goes through the landing path a user's file takes (read, then validate) and the row accounting is
checked exactly: rows in = rows kept + rows quarantined.
"""

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dagster_project.defs.ingestion.landing import RawInputError, read_landing_file
from dagster_project.defs.ingestion.schemas import table_specs
from dagster_project.defs.ingestion.validation import ValidationResult, validate
from dagster_project.problem import load_problem
from dagster_project.settings import EXAMPLES_DIR, Settings, Simulation

RAW_TABLES = table_specs(load_problem(Settings()).raw_tables)  # the subscription example's, as declared
DAY = dt.date(2025, 3, 1)
EVENTS_HEADER = (
    "customer_id,event_date,logins,sessions,minutes_active,purchases,purchase_amount,support_tickets,payment_failures"
)
GOOD_EVENT = "C1,2025-03-01,2,3,41.5,0,0.0,0,0"
CUSTOMERS_HEADER = (
    "customer_id,signup_date,plan,contract,monthly_price,region,acquisition_channel,payment_method,updated_at"
)
GOOD_CUSTOMER = "C1,2024-05-01,basic,monthly,9.99,north,organic,card,2025-03-01T10:00:00"


def _load(tmp_path: Path, table: str, content: str | bytes, suffix: str = ".csv") -> ValidationResult:
    path = tmp_path / table / f"{DAY}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return validate(read_landing_file(path), RAW_TABLES[table], DAY, str(path))


def _assert_accounting(result: ValidationResult, rows_in: int, quarantined: int) -> None:
    assert result.rows_in == rows_in
    assert result.rows_quarantined == quarantined
    assert result.rows_kept + result.rows_quarantined == result.rows_in


def _only_failure(result: ValidationResult) -> str:
    assert len(result.quarantine) == 1, result.quarantine
    return result.quarantine.iloc[0]["failed_checks"]


def test_clean_file_loads_whole(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\nC2,2025-03-01,1,1,5,1,4.5,1,0\n")
    _assert_accounting(result, 2, 0)
    assert result.valid["logins"].dtype == "int64"
    assert str(result.valid["event_date"].dtype) == "datetime64[us]"


def test_a_nullable_whole_number_keeps_its_blanks() -> None:
    """The wide-extract example declares whole-number columns nullable (a survey never answered): their blanks are
    kept as blanks, the other whole numbers stay int64."""
    from examples.wide_extract.simulator import account_extract

    spec = table_specs(load_problem(Settings(problem_dir=EXAMPLES_DIR / "wide_extract")).raw_tables)["account_extract"]
    frame = account_extract(Simulation(customers=50), DAY)
    result = validate(frame, spec, DAY, "simulator")
    _assert_accounting(result, len(frame), 0)
    assert result.valid["nps_response"].isna().sum() == frame["nps_response"].isna().sum() > 0
    assert result.valid["logins_30d"].dtype == "int64"


def test_wrong_type_is_quarantined_with_column_and_value(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\nC2,2025-03-01,many,1,5,0,0,0,0\n")
    _assert_accounting(result, 2, 1)
    row = result.quarantine.iloc[0]
    assert row["failed_checks"] == "logins:type(int64)"
    assert row["row_number"] == 1
    assert '"many"' in row["failure_values"]
    assert '"customer_id": "C2"' in row["record"]


def test_fractional_count_is_a_type_failure(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\nC2,2025-03-01,1.5,1,5,0,0,0,0\n")
    _assert_accounting(result, 1, 1)
    assert _only_failure(result) == "logins:type(int64)"


def test_missing_column_fails_naming_file_and_column(tmp_path: Path) -> None:
    header = EVENTS_HEADER.replace(",support_tickets", "")
    with pytest.raises(RawInputError, match=r"2025-03-01\.csv: missing required column\(s\) support_tickets"):
        _load(tmp_path, "activity_events", f"{header}\nC1,2025-03-01,2,3,41.5,0,0.0,0\n")


def test_extra_column_fails_naming_file_and_column(tmp_path: Path) -> None:
    with pytest.raises(RawInputError, match=r"2025-03-01\.csv: unexpected column\(s\) coupon_code"):
        _load(tmp_path, "activity_events", f"{EVENTS_HEADER},coupon_code\n{GOOD_EVENT},SPRING\n")


def test_an_extra_column_is_sent_to_the_problem_s_declaration(tmp_path: Path) -> None:
    declared_in = r"examples/subscription/models/staging/_raw__sources\.yml"
    with pytest.raises(RawInputError, match=rf"a new column is a schema change: declare it in {declared_in}"):
        _load(tmp_path, "activity_events", f"{EVENTS_HEADER},coupon_code\n{GOOD_EVENT},SPRING\n")


def test_null_key_is_quarantined(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\n,2025-03-01,1,1,5,0,0,0,0\n")
    _assert_accounting(result, 2, 1)
    assert _only_failure(result) == "customer_id:not_nullable"


def test_duplicate_key_keeps_the_first_and_quarantines_the_rest(tmp_path: Path) -> None:
    content = f"{EVENTS_HEADER}\n{GOOD_EVENT}\nC1,2025-03-01,9,9,99,0,0,0,0\nC1,2025-03-01,7,7,70,0,0,0,0\n"
    result = _load(tmp_path, "activity_events", content)
    _assert_accounting(result, 3, 2)
    assert result.valid.iloc[0]["logins"] == 2  # the first occurrence is the one kept
    assert sorted(result.quarantine["row_number"]) == [1, 2]
    assert all("multiple_fields_uniqueness" in checks for checks in result.quarantine["failed_checks"])


def test_negative_amount_is_quarantined(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\nC1,2025-03-01,2,3,41.5,1,-12.0,0,0\n")
    _assert_accounting(result, 1, 1)
    assert _only_failure(result) == "purchase_amount:greater_than_or_equal_to(0)"


def test_event_on_another_day_is_out_of_range(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\nC2,2025-03-02,1,1,5,0,0,0,0\n")
    _assert_accounting(result, 2, 1)
    assert _only_failure(result) == "event_date:on_partition_day(2025-03-01)"


def test_impossible_and_ancient_dates_are_quarantined(tmp_path: Path) -> None:
    content = (
        f"{CUSTOMERS_HEADER}\n{GOOD_CUSTOMER}\n"
        "C2,1899-12-31,basic,monthly,9.99,north,organic,card,2025-03-01T10:00:00\n"
        "C3,2025-13-45,basic,monthly,9.99,north,organic,card,2025-03-01T10:00:00\n"
        "C4,2025-03-05,basic,monthly,9.99,north,organic,card,2025-03-01T10:00:00\n"
    )
    result = _load(tmp_path, "customers", content)
    _assert_accounting(result, 4, 3)
    reasons = dict(zip(result.quarantine["row_number"], result.quarantine["failed_checks"], strict=True))
    assert reasons[1] == "signup_date:greater_than_or_equal_to(1990-01-01 00:00:00)"
    assert reasons[2] == "signup_date:type(datetime64[ns])"
    assert reasons[3] == "signup_date:not_after_partition_day(2025-03-01)"


def test_value_outside_the_allowed_set_is_quarantined(tmp_path: Path) -> None:
    content = (
        f"{CUSTOMERS_HEADER}\n{GOOD_CUSTOMER}\nC2,2024-05-01,gold,monthly,9.99,north,organic,card,2025-03-01T10:00:00\n"
    )
    result = _load(tmp_path, "customers", content)
    _assert_accounting(result, 2, 1)
    assert _only_failure(result).startswith("plan:isin(")


def test_several_failures_in_one_row_are_all_named(tmp_path: Path) -> None:
    content = f"{CUSTOMERS_HEADER}\nC2,2024-05-01,gold,weekly,-1,north,organic,card,2025-03-01T10:00:00\n"
    result = _load(tmp_path, "customers", content)
    _assert_accounting(result, 1, 1)
    assert result.quarantine.iloc[0]["failed_columns"] == "contract, monthly_price, plan"


def test_a_row_with_too_many_fields_is_quarantined_and_the_file_goes_on(tmp_path: Path) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\n{GOOD_EVENT},1,2,3\n")
    _assert_accounting(result, 2, 1)
    assert _only_failure(result) == "*:field_count(9)"
    assert result.quarantine.iloc[0]["failure_values"] == '["12"]'
    assert result.quarantine.iloc[0]["record"].endswith('"0", "1", "2", "3"]')


def test_a_quote_left_open_fails_naming_file_and_line(tmp_path: Path) -> None:
    content = f'{EVENTS_HEADER}\n{GOOD_EVENT}\n"C2,2025-03-01,1,1,5,0,0,0,0\n{GOOD_EVENT}\n'
    with pytest.raises(RawInputError, match=r"2025-03-01\.csv: not a readable CSV file: the record starting on line 3"):
        _load(tmp_path, "activity_events", content)


def test_corrupt_parquet_fails_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RawInputError, match=r"2025-03-01\.parquet: not a readable Parquet file"):
        _load(tmp_path, "activity_events", b"PAR1 this is not parquet", suffix=".parquet")


def test_empty_file_fails(tmp_path: Path) -> None:
    with pytest.raises(RawInputError, match=r"2025-03-01\.csv: the file is empty"):
        _load(tmp_path, "activity_events", b"")


def test_header_only_file_is_an_empty_day(tmp_path: Path) -> None:
    result = _load(tmp_path, "cancellations", "customer_id,cancel_date,cancel_reason,cancelled_at\n")
    _assert_accounting(result, 0, 0)


def test_wrong_encoding_fails_naming_file_and_line(tmp_path: Path) -> None:
    zurich = "C2,2024-05-01,basic,monthly,9.99,Zürich,organic,card,2025-03-01T10:00:00"
    content = f"{CUSTOMERS_HEADER}\n{GOOD_CUSTOMER}\n{zurich}\n"
    with pytest.raises(RawInputError, match=r"2025-03-01\.csv: not valid UTF-8 \(byte 0xfc on line 3, column region\)"):
        _load(tmp_path, "customers", content.encode("latin-1"))


def test_parquet_with_nanosecond_timestamps_is_read_and_typed(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "cancel_date": pd.to_datetime(["2025-03-01", "2025-03-01"]),
            "cancel_reason": ["price", None],
            "cancelled_at": pd.to_datetime(["2025-03-01 10:00:00.123456789", "2025-03-01 11:00:00"], format="ISO8601"),
        }
    )
    path = tmp_path / "cancellations" / f"{DAY}.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pandas(frame), path)
    result = validate(read_landing_file(path), RAW_TABLES["cancellations"], DAY, str(path))
    _assert_accounting(result, 2, 0)
    assert str(result.valid["cancelled_at"].dtype) == "datetime64[us]"
    assert result.valid["cancel_reason"].isna().sum() == 1  # the reason is optional


def _write_parquet(tmp_path: Path, table: str, frame: pd.DataFrame) -> ValidationResult:
    path = tmp_path / table / f"{DAY}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return validate(read_landing_file(path), RAW_TABLES[table], DAY, str(path))


def test_integer_ids_in_parquet_keep_their_identity(tmp_path: Path) -> None:
    # A null among integer ids makes pandas hold them as floats: 1 must not become "1.0".
    frame = pd.DataFrame(
        {
            "customer_id": pd.array([1, 3, None], dtype="Int64"),
            "cancel_date": pd.to_datetime(["2025-03-01"] * 3),
            "cancel_reason": ["price", None, None],
            "cancelled_at": pd.to_datetime(["2025-03-01 10:00"] * 3),
        }
    )
    result = _write_parquet(tmp_path, "cancellations", frame)
    _assert_accounting(result, 3, 1)
    assert result.valid["customer_id"].tolist() == ["1", "3"]
    assert _only_failure(result) == "customer_id:not_nullable"


@pytest.mark.parametrize("count", ["1e20", "100000000000000000000000", "9223372036854775808"])
def test_a_count_beyond_64_bits_is_quarantined_not_a_crash(tmp_path: Path, count: str) -> None:
    result = _load(tmp_path, "activity_events", f"{EVENTS_HEADER}\n{GOOD_EVENT}\nC2,2025-03-01,{count},1,5,0,0,0,0\n")
    _assert_accounting(result, 2, 1)
    assert _only_failure(result) == "logins:type(int64)"
    assert count in result.quarantine.iloc[0]["failure_values"]


def test_timestamps_with_two_utc_offsets_or_none_are_read_as_utc(tmp_path: Path) -> None:
    # The last Sunday of March: Berlin moves from +01:00 to +02:00; a naive value is taken as UTC.
    day = "2025-03-30"
    content = (
        "customer_id,cancel_date,cancel_reason,cancelled_at\n"
        f"C1,{day},,{day}T01:30:00+01:00\n"
        f"C2,{day},,{day}T03:30:00+02:00\n"
        f"C3,{day},,{day}T04:00:00\n"
        f"C4,{day},,{day}T05:00:00Z\n"
    )
    path = tmp_path / "cancellations" / f"{day}.csv"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    result = validate(read_landing_file(path), RAW_TABLES["cancellations"], dt.date(2025, 3, 30), str(path))
    _assert_accounting(result, 4, 0)
    assert result.valid["cancelled_at"].dt.strftime("%H:%M").tolist() == ["00:30", "01:30", "04:00", "05:00"]


def test_keys_differing_only_in_spaces_or_unicode_form_are_one_customer(tmp_path: Path) -> None:
    jose_nfc, jose_nfd = "Jos\u00e9", "Jose\u0301"
    content = (
        "customer_id,cancel_date,cancel_reason,cancelled_at\n"
        "C1,2025-03-01,,2025-03-01T10:00:00\n"
        " C1 ,2025-03-01,,2025-03-01T11:00:00\n"
        f"{jose_nfc},2025-03-01,,2025-03-01T10:00:00\n"
        f"{jose_nfd},2025-03-01,,2025-03-01T11:00:00\n"
    )
    result = _load(tmp_path, "cancellations", content)
    _assert_accounting(result, 4, 2)  # the second of each pair is a duplicate key, never a second customer
    assert result.valid["customer_id"].tolist() == ["C1", jose_nfc]
    assert sorted(result.quarantine["row_number"]) == [1, 3]
    assert '" C1 "' in result.quarantine.iloc[0]["record"]  # the quarantine keeps the value as it arrived
    assert result.values_normalized == {"customer_id": 2}
