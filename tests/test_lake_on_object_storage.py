"""The lake's own readers and writers on an S3 API server (moto's, on loopback: ``tests/s3_server.py``), reached
only as AWS's clients reach it, through AWS's variables: the raw layer and its quarantine, DuckDB's read of the
raw layer (what dbt's sources do), the Delta table of scores (delta-rs), the top-risk list and a drift report, and
the prediction log. Each is compared with the same write to a local lake; nothing lands on the local disk.
"""

import datetime as dt
import io
import threading
import time
import urllib.request
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from churn_world import CATEGORICAL, CONTRACT, NUMERIC, START, ChurnWorld, days
from s3_server import S3Server

from dagster_project import lake
from dagster_project.defs.ingestion import volume
from dagster_project.defs.ml.training import FeatureColumns, ModelKind, TrainingParams, build_pipeline
from dagster_project.defs.scoring import scores as scoring
from dagster_project.defs.serving.prediction_log import read_prediction_log, write_log_file
from dagster_project.resources import WarehouseResource
from dagster_project.settings import Settings, get_settings
from spark_jobs.contract import FEATURE_SNAPSHOT_DATE

TABLE = "activity_events"
RACE_SECONDS = 120  # the race's bound, never reached on an idle machine (about 2 s)
DAY = START + dt.timedelta(days=70)


@pytest.fixture
def s3_lake(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh prefix of the bucket, and the environment that reaches it: AWS's variables, nothing else."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    for key, value in s3_server.aws_env().items():
        monkeypatch.setenv(key, value)
    return s3_server.uri(f"lake-{request.node.name}")


def _log_row(i: int) -> dict[str, object]:
    return {"request_id": f"r{i}", "entity_key": f"C{i}", "features": "{}", "overrides": "{}", "model_name": "m",
            "model_version": "1", "variant": "champion", "probability": 0.5, "risk_band": "medium",
            "latency_ms": 1.0, "requested_at": dt.datetime(2025, 3, 1, 0, 0, i, tzinfo=dt.UTC),
            FEATURE_SNAPSHOT_DATE: DAY}  # fmt: skip


def _day(rows: int, amount: float) -> pa.Table:
    return pa.table({"customer_id": [f"C{i}" for i in range(rows)], "amount": [amount] * rows})


def test_settings_keep_an_object_store_root_as_its_uri(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLATFORM_LAKE_ROOT", "s3://bucket/some//prefix")
    assert Settings().lake_root == "s3://bucket/some//prefix"  # a Path would fold the scheme's slashes
    monkeypatch.setenv("PLATFORM_LAKE_ROOT", "relative/lake")
    assert Settings().lake_root == Path("relative/lake")


def test_a_raw_day_and_its_quarantine_commit_together_on_the_object_store(
    s3_lake: str, s3_server: S3Server, tmp_path: Path
) -> None:
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    for earlier in range(1, 4):  # the trailing days the volume check reads
        lake.write_raw_day(s3_lake, TABLE, DAY - dt.timedelta(days=earlier), _day(10 + earlier, 1.0), _day(0, 0.0))
    first_raw, first_quarantine = lake.write_raw_day(s3_lake, TABLE, DAY, _day(5, 1.0), _day(2, -1.0))
    # The day is corrected at the source and ingested again: the new pair replaces the old one whole.
    raw, quarantine = lake.write_raw_day(s3_lake, TABLE, DAY, _day(6, 2.0), _day(1, -2.0))
    assert raw == first_raw == lake.partition_path(s3_lake, lake.RAW, TABLE, DAY) and isinstance(raw, str)
    assert quarantine != first_quarantine
    assert lake.committed_quarantine_path(s3_lake, TABLE, DAY) == quarantine
    assert lake.read_quarantine(s3_lake, TABLE, DAY).equals(_day(1, -2.0))
    assert lake.read_parquet(raw).select(["customer_id", "amount"]).equals(_day(6, 2.0))
    day_keys = [k for k in s3_server.keys(prefix) if f"date={DAY}" in k]
    assert sorted(day_keys) == sorted(
        [
            f"{prefix}/raw/{TABLE}/date={DAY}/part-0.parquet",
            f"{prefix}/quarantine/{TABLE}/date={DAY}/{lake.name(quarantine)}",
        ]
    )  # fmt: skip  (the first quarantine, which no raw file names any more, is gone)
    assert volume.trailing_row_counts(s3_lake, lake.RAW, TABLE, DAY + dt.timedelta(days=1)) == (13, 12, 11, 6)
    assert lake.read_quarantine(s3_lake, TABLE, DAY + dt.timedelta(days=1)) is None

    # DuckDB reads the layer as dbt's sources do (dbt_project/macros/lake.sql), through the platform's S3 client.
    connection = duckdb.connect()
    connection.register_filesystem(lake.duckdb_filesystem(s3_lake))
    glob = f"{s3_lake}/{lake.RAW}/{TABLE}/date=*/*.parquet"
    read = f"read_parquet('{glob}', hive_partitioning=true)"
    counted = connection.execute(f"select date, count(*), sum(amount) from {read} group by all order by 1").fetchall()
    assert counted == [(DAY - dt.timedelta(days=3), 13, 13.0), (DAY - dt.timedelta(days=2), 12, 12.0),
                       (DAY - dt.timedelta(days=1), 11, 11.0), (DAY, 6, 12.0)]  # fmt: skip
    assert lake.duckdb_filesystem(tmp_path) is None  # a local lake: DuckDB's own files
    # dbt's staging views over the layer, in the warehouse file, as the platform's own connections follow them.
    warehouse = WarehouseResource(path=str(tmp_path / "features.duckdb"), lake_root=s3_lake)
    with warehouse.connect(read_only=False) as writer:
        writer.execute(f"create view stg as select * from {read}")
    with warehouse.connect() as reader:
        assert reader.execute("select count(*) from stg").fetchone() == (42,)


def test_scores_reports_and_the_prediction_log_on_the_object_store_match_a_local_lake(
    s3_lake: str, s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = ChurnWorld(customers=30)
    features = world.features(DAY)
    history = world.training_frame(days(START, 3))
    columns = FeatureColumns(numeric=NUMERIC, categorical=CATEGORICAL)
    pipeline = build_pipeline(TrainingParams(model_kind=ModelKind.logistic_regression), columns)
    model = pipeline.fit(history[columns.all].astype(dict.fromkeys(NUMERIC, "float64")), history["churned"])
    local = tmp_path / "lake"
    monkeypatch.chdir(tmp_path)  # anything written to a relative path would land here
    stored = {}
    for root in (local, s3_lake):
        day_scores = scoring.score_snapshot(model, features, CONTRACT, model_name="m", model_version="1",
                                            scored_at=dt.datetime(2025, 3, 1))  # fmt: skip
        scoring.write_scores(root, DAY, day_scores, CONTRACT)
        scoring.write_scores(root, DAY + dt.timedelta(days=1),
                             day_scores.assign(snapshot_date=DAY + dt.timedelta(days=1)), CONTRACT)  # fmt: skip
        bad = scoring.write_scores(root, DAY, day_scores.head(3), CONTRACT)
        assert bad.replaced_rows == 30 and bad.table_version == 2
        scoring.restore_day(root, DAY, bad, CONTRACT)  # what the asset does when the stored day fails its check
        stored[str(root)] = scoring.read_scores_table(root, DAY, CONTRACT)
        top = scoring.write_top_risk(root, DAY, scoring.top_risk(day_scores, features, 5, CONTRACT))
        report = lake.write_text_atomically(lake.drift_report_path(root, DAY), "<html>drift</html>")
        assert lake.read_text(report) == "<html>drift</html>"
        with urllib.request.urlopen(lake.link(report), timeout=10) as page:  # what the UI's link opens
            assert page.read() == b"<html>drift</html>"
        assert len(pd.read_csv(io.StringIO(lake.read_text(top)))) == 5
        log_rows = [_log_row(i) for i in range(3)]
        write_log_file(root, DAY, log_rows[1:])
        write_log_file(root, DAY, log_rows[:1])
        assert read_prediction_log(root, DAY)["request_id"].tolist() == ["r0", "r1", "r2"]

    # Where the platform's address of the store is not the browser's (a private network), links are signed for the
    # browser's: here the same server by another name.
    monkeypatch.setenv("PLATFORM_LAKE_LINK_ENDPOINT_URL", f"http://localhost:{s3_server.port}")
    get_settings.cache_clear()
    public = lake.link(lake.drift_report_path(s3_lake, DAY))
    assert public.startswith(f"http://localhost:{s3_server.port}/{s3_server.bucket}/")
    with urllib.request.urlopen(public, timeout=10) as page:
        assert page.read() == b"<html>drift</html>"

    on_s3, on_disk = stored[s3_lake], stored[str(local)]
    assert on_s3.num_rows == 30 and on_s3.equals(on_disk)
    prefix = s3_lake.removeprefix(f"s3://{s3_server.bucket}/")
    keys = s3_server.keys(prefix)
    assert f"{prefix}/scoring/batch_scores/_delta_log/00000000000000000003.json" in keys
    assert f"{prefix}/scoring/top_risk/date={DAY}/top_risk.csv" in keys
    assert f"{prefix}/monitoring/drift_reports/date={DAY}/report.html" in keys
    assert len([k for k in keys if "/prediction_log/" in k]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]  # nothing of the S3 lake on the local disk


def test_a_day_read_while_it_is_rewritten_comes_back_whole_in_one_version(s3_lake: str) -> None:
    """The store has no rename: a day is replaced by one upload, and the platform's readers (pyarrow's and
    DuckDB's, as dbt reads the raw layer) take a file in one GET, so a reader racing a rewrite gets the old day or
    the new one, never the footer of one and the pages of the other (what ranged reads of a Parquet file risk)."""
    path = lake.partition_path(s3_lake, lake.RAW, TABLE, DAY)
    versions = {rows: _day(rows, float(rows % 7)) for rows in (30_000, 45_000)}  # two sizes, two contents
    whole = {(rows, float(rows % 7) * rows) for rows in versions}
    lake.write_partition_atomically(versions[30_000], path)
    stop, rewrites = threading.Event(), []

    def rewrite() -> None:
        while not stop.is_set():
            for table in versions.values():
                lake.write_partition_atomically(table, path)
                rewrites.append(table.num_rows)

    writer = threading.Thread(target=rewrite, daemon=True)
    seen: list[tuple[int, float]] = []
    changed: list[str] = []
    duckdb_reads = 0
    writer.start()
    deadline = time.monotonic() + RACE_SECONDS
    try:
        # At least 25 reads of each reader, and on until the day was rewritten 10 times meanwhile and both versions
        # were read (however the load on the machine paces the two threads).
        while (duckdb_reads < 25 or len(rewrites) < 10 or len(set(seen)) < 2) and time.monotonic() < deadline:
            table = lake.read_parquet(path)
            seen.append((table.num_rows, pc.sum(table["amount"]).as_py()))
            # DuckDB asks about a file several times (a glob's listing, its size, the reads), each a request: a
            # connection pins the version it first saw, and a file replaced in between fails by its name.
            connection = duckdb.connect()
            connection.register_filesystem(lake.duckdb_filesystem(s3_lake))
            try:
                seen.append(connection.execute(f"select count(*), sum(amount) from read_parquet('{path}')").fetchone())
                duckdb_reads += 1
            except duckdb.Error as error:
                assert "was replaced while it was being read" in str(error) and path in str(error), error
                changed.append(str(error))
            connection.close()
    finally:
        stop.set()
        writer.join(timeout=60)
    assert set(seen) <= whole, set(seen) - whole  # never a footer of one version over the pages of another
    assert len(rewrites) >= 10 and len(set(seen)) == 2  # the day was rewritten while read, and both were read
    assert duckdb_reads >= 25, (duckdb_reads, changed)  # DuckDB read whole versions too, not only refusals
