"""The jobs' own command lines: every path and session value is a flag, nothing comes from the settings."""

import datetime as dt
import json
from pathlib import Path

import pytest
from offline_lake import CONTRACT, OfflineLake, end_of, feature_table, write_features, write_labels
from pyspark.sql import SparkSession

from dagster_project.settings import Settings
from spark_jobs import feature_snapshots, maintenance, tables, training_set

pytestmark = pytest.mark.spark

DAYS = [dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
CUSTOMERS = ["c-1", "c-2", "c-3"]


def session_flags() -> list[str]:
    # The process's session is already live (the fixture), so these only have to be complete, as a user's are.
    return ["--master", "local[2]", "--driver-memory", "1g", "--jars-cache", str(Settings().jars_cache)]


def test_snapshot_build_rebuild_and_maintain_from_the_command_line(
    spark: SparkSession, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    lake = OfflineLake(tmp_path / "somewhere_else")  # no settings point here: only the flags do
    store = ["--store-root", str(lake.store.store_root)]
    contract_file = tmp_path / "contract.json"  # as `python -m dagster_project.cli contract` prints it
    contract_file.write_text(CONTRACT.to_json())
    contract = ["--contract", str(contract_file)]
    for d in DAYS:
        write_features(lake.root, d, feature_table(CUSTOMERS, d))
    matured = DAYS[1] + dt.timedelta(days=1)
    write_labels(lake.root, matured, [(c, DAYS[1], end_of(DAYS[1]), i % 2) for i, c in enumerate(CUSTOMERS)])

    with pytest.raises(SystemExit):  # each --date needs its own --source
        feature_snapshots.main([*contract, *store, "--date", "2025-03-01", "--date", "2025-03-02",
                                "--source", str(lake.features(DAYS[0])), *session_flags()])  # fmt: skip
    assert "each --date once, with its own --source" in capsys.readouterr().err
    days = [flag for d in DAYS for flag in ("--date", d.isoformat(), "--source", str(lake.features(d)))]
    assert feature_snapshots.main([*contract, *store, *days, "--run-id", "cli", *session_flags()]) == 0
    assert tables.latest_version(spark, lake.store.feature_snapshots) == 0  # all the days in one commit
    written = feature_snapshots.commit_days(tables.commit(spark, lake.store.feature_snapshots, 0).user_metadata)
    assert {day: lineage["source"] for day, lineage in written.items()} == {
        d.isoformat(): str(lake.features(d)) for d in DAYS
    }
    capsys.readouterr()

    labels = ["--labels", str(lake.labels)]
    assert training_set.main([*contract, *store, *labels, "--churn-horizon-days", "1", *session_flags()]) == 0
    built = json.loads(capsys.readouterr().out)
    assert (built["version"], built["feature_store_version"], built["rows"]) == (0, 0, len(CUSTOMERS))
    assert tables.commit(spark, lake.store.training_set, 0).user_metadata["churn_horizon_days"] == 1

    assert training_set.main([*contract, *store, *labels, "--rebuild", "0", *session_flags()]) == 0
    assert "identical" in capsys.readouterr().out

    assert maintenance.main([*store, "--dry-run", *session_flags()]) == 0
    reports = {r["table"]: r for r in json.loads(capsys.readouterr().out)}
    assert reports["feature_snapshots"]["latest_version"] == 0 and reports["training_set"]["latest_version"] == 0
