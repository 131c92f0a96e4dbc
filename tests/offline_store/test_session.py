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
