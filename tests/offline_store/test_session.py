"""The one session builder: Delta from the cached jars (offline), UTC, and the settings for every kind of master."""

import json
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dagster_project import cli
from dagster_project.settings import Settings, get_settings
from spark_jobs import session


@pytest.mark.spark
def test_the_session_runs_delta_from_the_cached_jars_in_utc(spark: SparkSession):
    conf = spark.sparkContext.getConf()
    jars = session.delta_jars(Settings().jars_cache)
    cached = jars.cached()
    assert cached, "the session fixture fetched (or found) the jars in the cache"
    assert conf.get("spark.jars.packages", None) is None  # nothing is resolved at start-up: offline
    assert {Path(j.removeprefix("file:")).name for j in conf.get("spark.jars").split(",")} == {p.name for p in cached}
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.catalog.spark_catalog").endswith("DeltaCatalog")
    assert any(p.name.startswith("io.delta_delta-spark_") for p in cached)
    # Spark already ships Hadoop and Parquet: the cache does not add a second copy to the class path.
    assert not any("hadoop-client" in p.name or "parquet-hadoop" in p.name for p in cached)
    assert session.get_spark() is spark  # one session per process: later calls need no arguments


@pytest.mark.spark
def test_the_driver_jvm_gets_the_java_options_of_the_settings(spark: SparkSession):
    flags = get_settings().spark_driver_java_options
    assert flags, "the suite runs its drivers with JVM flags (tests/conftest.py)"
    assert session.session_conf("local[2]", "1g", [], flags)["spark.driver.extraJavaOptions"] == flags
    assert "spark.driver.extraJavaOptions" not in session.session_conf("local[2]", "1g", [], " ")
    runtime = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
    assert set(flags.split()) <= set(runtime.getInputArguments()), "the JVM that runs the session has them"


def test_a_complete_cache_is_used_as_is_and_an_interrupted_one_is_not(tmp_path: Path):
    jars = session.delta_jars(tmp_path)
    assert jars.coordinate.startswith(f"io.delta:delta-spark_{session.spark_minor_version()}_2.13:")
    jars.folder.mkdir(parents=True)
    (jars.folder / "a.jar").write_bytes(b"")
    assert jars.cached() is None  # no marker: a download that never finished
    jars.marker.write_text(json.dumps({"jars": ["a.jar"]}))
    assert session.fetch_delta_jars(tmp_path) == [jars.folder / "a.jar"]  # no network touched
    (jars.folder / "a.jar").unlink()
    assert jars.cached() is None  # a file went missing: fetch again


@pytest.mark.parametrize(
    ("name", "artifact"),
    [
        ("parquet-hadoop-1.17.0.jar", "parquet-hadoop"),
        ("zstd-jni-1.5.7-7.jar", "zstd-jni"),
        ("log4j-slf4j2-impl-2.25.4.jar", "log4j-slf4j2-impl"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
    ],
)
def test_artifact_names(name: str, artifact: str):
    assert session._artifact_name(name) == artifact
    assert session._artifact_name(f"org.example_{name}", with_group=True) == artifact


def test_settings_per_master():
    local = session.session_conf("local[3]", "3g", [Path("/jars/a.jar")])
    assert local["spark.sql.shuffle.partitions"] == "6" and local["spark.driver.memory"] == "3g"
    assert local["spark.sql.sources.parallelPartitionDiscovery.parallelism"] == "6"  # VACUUM's listing job
    assert local["spark.jars"] == "/jars/a.jar"
    cluster = session.session_conf("spark://master:7077", "3g", [Path("/jars/a.jar")])
    assert "spark.sql.shuffle.partitions" not in cluster and "spark.driver.host" not in cluster
    assert cluster["spark.sql.extensions"] == local["spark.sql.extensions"]
    server = session.connect_server_conf()
    assert server["spark.jars.packages"] == session.delta_coordinate()
    assert server["spark.sql.session.timeZone"] == "UTC"


def test_the_jobs_command_line_takes_the_cache_as_a_flag_and_the_platform_one_takes_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    jars = session.delta_jars(tmp_path)
    jars.folder.mkdir(parents=True)
    (jars.folder / "a.jar").write_bytes(b"")
    jars.marker.write_text(json.dumps({"jars": ["a.jar"]}))  # complete: nothing is fetched

    with pytest.raises(SystemExit):  # spark_jobs reads no settings: without the flag it cannot know the cache
        session.main(["--fetch-jars"])
    assert "--jars-cache" in capsys.readouterr().err
    assert session.main(["--fetch-jars", "--jars-cache", str(tmp_path)]) == 0
    assert str(jars.folder) in capsys.readouterr().out

    monkeypatch.setenv("PLATFORM_JARS_CACHE", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert cli.main(["jars"]) == 0
    finally:
        get_settings.cache_clear()
    assert f"1 Delta jars cached in {jars.folder}" in capsys.readouterr().out


# Run in a process of its own: the suite's processes already hold their session, and this is about the first one.
BACKGROUND_START = """
import json, sys, threading
import dagster as dg
from dagster_project.resources import SparkResource
from spark_jobs import session

jars_cache, lake_root, java_options = sys.argv[1:4]
resource = SparkResource(master="local[1]", driver_memory="1g", jars_cache=jars_cache, lake_root=lake_root,
                         driver_java_options=java_options)
none_before = session._session is None
resource.setup_for_execution(dg.build_init_resource_context())  # what every run that needs Spark does first
starter = next(t for t in threading.enumerate() if t.name == "spark-session-start")
# A second run of the same process while the first start is under way starts nothing.
second = session.start_in_background(lambda: 1 / 0, lambda spark: None)
starter.join(180)
live = session._session
print(json.dumps({
    "none_before": none_before,
    "second": second,
    "finished": not starter.is_alive(),
    "one_session": live is not None and resource.get_session() is live,
    "warm_up_jobs": len(live.sparkContext.statusTracker().getJobIdsForGroup()),
    "after_start": session.start_in_background(lambda: 1 / 0, lambda spark: None),
}))
"""


@pytest.mark.spark
def test_a_run_starts_the_session_on_a_thread_and_warms_it_on_the_offline_store(tmp_path: Path):
    """The run's resource starts the one session as the run begins, without waiting for it, and reads the offline
    store's snapshot table once: the first Spark step (after the raw tables and dbt) finds it ready."""
    import subprocess
    import sys

    import pyarrow as pa
    from deltalake import write_deltalake

    from dagster_project import lake

    lake_root = tmp_path / "lake"
    snapshots = lake.offline_store(lake_root).feature_snapshots
    write_deltalake(str(snapshots), pa.table({"customer_id": ["c1", "c2"], "f0": [1.0, 2.0]}))
    settings = Settings()
    arguments = [str(settings.jars_cache), str(lake_root), settings.spark_driver_java_options]
    done = subprocess.run(
        [sys.executable, "-c", BACKGROUND_START, *arguments],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["none_before"] and figures["finished"] and figures["one_session"]
    assert figures["second"] is False and figures["after_start"] is False  # one start, one session
    assert figures["warm_up_jobs"] >= 1  # the warm-up read the table (a table-less lake runs no job)
