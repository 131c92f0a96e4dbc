"""The raw tables' schemas, generated from the problem's declaration: the subscription example's checks as they were
written by hand before, and a wrong declaration refused with the table and the column or field named."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from dagster_project.defs import ingestion
from dagster_project.defs.ingestion.schemas import AbsentDay, TableSpec, table_spec, table_specs
from dagster_project.problem import DeclarationError, load_problem
from dagster_project.settings import Settings, Source

SOURCES_YAML = Path("models") / "staging" / "_raw__sources.yml"
DECLARED_IN = "examples/subscription/models/staging/_raw__sources.yml"
LENGTH_1_64 = ["str_length(1, 64)"]
COUNT = ["greater_than_or_equal_to(0)"]
# Every column's dtype, nullability and checks, as the hand-written pandera models of the subscription example had
# them before the declaration moved into its dbt source.
EXPECTED_COLUMNS = {
    "customers": {
        "customer_id": ("str", False, LENGTH_1_64),
        "signup_date": ("datetime64[ns]", False, ["greater_than_or_equal_to(1990-01-01 00:00:00)"]),
        "plan": ("str", False, ["isin(['basic', 'standard', 'premium'])"]),
        "contract": ("str", False, ["isin(['monthly', 'annual'])"]),
        "monthly_price": ("float64", False, ["greater_than(0)", "less_than_or_equal_to(1000)"]),
        "region": ("str", False, LENGTH_1_64),
        "acquisition_channel": ("str", False, LENGTH_1_64),
        "payment_method": ("str", False, ["isin(['card', 'paypal', 'direct_debit'])"]),
        "updated_at": ("datetime64[ns]", False, []),
    },
    "activity_events": {
        "customer_id": ("str", False, LENGTH_1_64),
        "event_date": ("datetime64[ns]", False, []),
        "logins": ("int64", False, [*COUNT, "less_than_or_equal_to(1000)"]),
        "sessions": ("int64", False, [*COUNT, "less_than_or_equal_to(5000)"]),
        "minutes_active": ("float64", False, [*COUNT, "less_than_or_equal_to(1440)"]),
        "purchases": ("int64", False, [*COUNT, "less_than_or_equal_to(1000)"]),
        "purchase_amount": ("float64", False, [*COUNT, "less_than_or_equal_to(100000)"]),
        "support_tickets": ("int64", False, [*COUNT, "less_than_or_equal_to(100)"]),
        "payment_failures": ("int64", False, [*COUNT, "less_than_or_equal_to(100)"]),
    },
    "cancellations": {
        "customer_id": ("str", False, LENGTH_1_64),
        "cancel_date": ("datetime64[ns]", False, []),
        "cancel_reason": ("str", True, ["str_length(None, 64)"]),
        "cancelled_at": ("datetime64[ns]", False, []),
    },
}


@pytest.fixture(scope="module")
def raw_nodes() -> dict[str, Mapping[str, Any]]:
    """The subscription example's raw tables, as the manifest declares them."""
    return {node["name"]: node for node in load_problem(Settings()).raw_tables}


def test_the_generated_schemas_check_what_the_hand_written_models_did(raw_nodes: dict[str, Mapping[str, Any]]) -> None:
    specs = table_specs(raw_nodes.values())
    assert list(specs) == ["customers", "activity_events", "cancellations"]  # the declaration's order
    for name, spec in specs.items():
        described = {
            column: (str(c.dtype), c.nullable, [check.error for check in c.checks])
            for column, c in spec.schema.columns.items()
        }
        assert described == EXPECTED_COLUMNS[name], name
        assert spec.schema.strict is True
        assert spec.schema.unique == list(spec.keys)
        assert spec.declared_in == DECLARED_IN
    assert specs["customers"] == _spec_like(specs["customers"], ("customer_id",), ("updated_at",), ("signup_date",))
    assert specs["activity_events"] == _spec_like(
        specs["activity_events"], ("customer_id", "event_date"), ("event_date",), (), 0.5, AbsentDay.error
    )
    assert specs["cancellations"] == _spec_like(
        specs["cancellations"], ("customer_id",), ("cancel_date", "cancelled_at")
    )
    assert specs["customers"].date_columns == ("signup_date",)  # a day, stored as date32; updated_at is an instant


def _spec_like(
    spec: TableSpec,
    keys: tuple[str, ...],
    on_day: tuple[str, ...],
    not_after_day: tuple[str, ...] = (),
    min_volume_share: float | None = None,
    absent_day: AbsentDay = AbsentDay.empty,
) -> TableSpec:
    return TableSpec(
        name=spec.name,
        schema=spec.schema,
        keys=keys,
        date_columns=spec.date_columns,
        on_partition_day=on_day,
        not_after_partition_day=not_after_day,
        min_volume_share=min_volume_share,
        absent_day=absent_day,
        declared_in=DECLARED_IN,
    )


# --- a wrong declaration --------------------------------------------------------------------------------------------

Node = dict[str, Any]


def _meta(node: Node, column: str | None = None, **changes: Any) -> Node:
    """``node`` with the meta of the table (or of ``column``) changed; a value of None removes the field."""
    target = node if column is None else node["columns"][column]
    for meta in (target.setdefault("meta", {}), target.setdefault("config", {}).setdefault("meta", {})):
        for field, value in changes.items():
            if value is None:
                meta.pop(field, None)
            else:
                meta[field] = value
    return node


def _data_type(column: str, data_type: str | None) -> Callable[[Node], Node]:
    def change(node: Node) -> Node:
        node["columns"][column]["data_type"] = data_type
        return node

    return change


# (table, the change to its declaration, what the message must name besides the table)
BROKEN: dict[str, tuple[str, Callable[[Node], Node], str]] = {
    "unknown_data_type": (
        "customers",
        _data_type("monthly_price", "money"),
        r"column monthly_price data_type 'money' is not one of varchar",
    ),
    "no_data_type": ("customers", _data_type("region", None), r"column region has no data_type"),
    "key_not_a_column": (
        "activity_events",
        lambda n: _meta(n, keys=["customer_id", "event_day"]),
        r"meta keys names column event_day, which is not among its declared columns",
    ),
    "unknown_table_field": (
        "cancellations",
        lambda n: _meta(n, unique_key=["customer_id"]),
        r"unknown meta field\(s\) unique_key; a table's are: keys, day_columns",
    ),
    "unknown_column_field": (
        "activity_events",
        lambda n: _meta(n, "logins", maximum=5),
        r"column logins: unknown meta field\(s\) maximum",
    ),
    "min_above_max": (
        "activity_events",
        lambda n: _meta(n, "logins", min=10, max=5),
        r"column logins: meta min 10 and max 5 leave no value",
    ),
    "exclusive_bound_on_max": (
        "customers",
        lambda n: _meta(n, "monthly_price", greater_than=1000),
        r"column monthly_price: meta greater_than 1000 and max 1000 leave no value",
    ),
    "min_length_above_max_length": (
        "customers",
        lambda n: _meta(n, "region", min_length=65),
        r"column region: meta min_length 65 is above max_length 64",
    ),
    "no_day_column": (
        "cancellations",
        lambda n: _meta(n, day_columns=None),
        r"meta day_columns is missing",
    ),
    "day_column_not_a_day": (
        "customers",
        lambda n: _meta(n, day_columns=["plan"]),
        r"meta day_columns names column plan, a varchar: not a date or timestamp",
    ),
    "length_of_a_number": (
        "activity_events",
        lambda n: _meta(n, "logins", max_length=3),
        r"column logins: meta max_length apply to text columns only",
    ),
    "bound_on_text": (
        "customers",
        lambda n: _meta(n, "plan", min=1),
        r"column plan: meta min apply to numbers and days",
    ),
    "date_bound_not_a_day": (
        "customers",
        lambda n: _meta(n, "signup_date", min="the nineties"),
        r"column signup_date: meta min must be a day as ISO text",
    ),
    "yaml_booleans_as_text_values": (
        "customers",
        lambda n: _meta(n, "contract", accepted_values=[True, False]),
        r"column contract: meta accepted_values must be a list of str values \(quote them",
    ),
    "nullable_key": (
        "cancellations",
        lambda n: _meta(n, "customer_id", nullable=True),
        r"key column customer_id is declared nullable",
    ),
    "unknown_absent_day": (
        "cancellations",
        lambda n: _meta(n, absent_day="skip"),
        r"meta absent_day must be empty or error, got 'skip'",
    ),
    "volume_share_above_one": (
        "activity_events",
        lambda n: _meta(n, min_volume_share=50),
        r"meta min_volume_share must be a share above 0 and at most 1, got 50",
    ),
}


@pytest.mark.parametrize("case", BROKEN, ids=str)
def test_a_wrong_declaration_fails_naming_table_and_column(case: str, raw_nodes: dict[str, Mapping[str, Any]]) -> None:
    table, change, message = BROKEN[case]
    node = change(copy.deepcopy(dict(raw_nodes[table])))
    with pytest.raises(DeclarationError, match=rf"^raw table {table} \({re.escape(DECLARED_IN)}\): {message}"):
        table_spec(node)


def test_the_source_s_own_meta_is_no_unknown_field(raw_nodes: dict[str, Mapping[str, Any]]) -> None:
    # dbt-duckdb's external_location is declared once for the whole source; every table inherits it.
    assert "external_location" in raw_nodes["customers"]["config"]["meta"]
    table_spec(raw_nodes["customers"])


# --- a problem of one's own, outside the repository -----------------------------------------------------------------


def _problem_copy(root: Path, name: str, edit: Callable[[str], str] | None = None) -> Path:
    """The subscription example's dbt models and macros in a folder of its own (no simulator), its raw source YAML
    passed through ``edit``."""
    example = Settings().problem_dir
    folder = root / name
    for part in ("models", "macros"):
        shutil.copytree(example / part, folder / part)
    if edit is not None:
        yaml = folder / SOURCES_YAML
        declared = yaml.read_text()
        assert edit(declared) != declared, "the edit found nothing to change"
        yaml.write_text(edit(declared))
    return folder


PRICE_DECLARATION = "data_type: double\n            config: {meta: {greater_than: 0, max: 1000}}"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda text: text.replace("keys: [customer_id, event_date]", "keys: [customer_id, event_day]"),
            r"raw table activity_events \(.*_raw__sources\.yml\): meta keys names column event_day",
        ),
        (
            lambda text: text.replace(
                "data_type: double\n            config: {meta: {greater_than: 0",
                "data_type: money\n            config: {meta: {greater_than: 0",
            ),
            r"raw table customers \(.*_raw__sources\.yml\): column monthly_price data_type 'money' is not one of",
        ),
    ],
    ids=["key_not_a_column", "unknown_data_type"],
)
def test_a_wrong_declaration_fails_when_the_definitions_load(
    tmp_path: Path, edit: Callable[[str], str], message: str
) -> None:
    settings = Settings(problem_dir=_problem_copy(tmp_path, "broken_declaration", edit), source=Source.landing)
    with pytest.raises(DeclarationError, match=message):
        ingestion.build_defs(settings)


def test_a_problem_outside_the_repository_without_a_simulator(tmp_path: Path) -> None:
    problem = _problem_copy(tmp_path, "own_problem")
    on_landing = ingestion.build_defs(Settings(problem_dir=problem, source=Source.landing))
    assert sorted(asset.key.path[-1] for asset in on_landing.assets) == [
        "activity_events",
        "cancellations",
        "customers",
    ]
    with pytest.raises(DeclarationError, match=r"PLATFORM_SOURCE=simulator, but the problem .*own_problem has no "):
        ingestion.build_defs(Settings(problem_dir=problem, source=Source.simulator))
