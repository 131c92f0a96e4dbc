"""The one Spark session builder of the project, configured for Delta Lake.

Where the session runs is the caller's ``master`` (Dagster's ``SparkResource`` passes the settings'
``PLATFORM_SPARK_MASTER``; the command lines take ``--master``), so the same jobs run anywhere with no code change:

* ``local[*]`` (the default) or ``local[N]``: in this process, on this machine;
* ``spark://host:7077`` (standalone) or ``k8s://https://host:443`` (Kubernetes, client mode): the driver runs
  here and ships the cached Delta jars to the executors;
* ``sc://host:15002``: Spark Connect. The client sends plans only; the server must already have Delta on its
  class path. ``python -m spark_jobs.session --connect-server-conf`` prints the ``--packages`` and ``--conf``
  arguments to start such a server with.

The Delta jars come from Maven Central and are cached under the ``jars_cache`` folder the caller names: the first
session (or ``python -m spark_jobs.session --fetch-jars --jars-cache DIR``; ``make jars`` and the image call
``python -m dagster_project.cli jars``, which passes the settings' cache) resolves them once with the Ivy that
ships inside pyspark; every later session starts from the cached files, offline. Jars that Spark already ships
(Hadoop, Parquet, Jackson, logging) are left out so the class path holds one copy of each library.

The jobs in this package use DataFrames and Delta SQL only (no ``DeltaTable`` Python API), so they work the
same over a classic session and over Spark Connect. Nothing here reads settings or the environment for its
configuration: every value is an argument.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spark_jobs.object_store import ObjectStore, is_uri

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# The Delta release whose jars the session loads. The pip package ``delta-spark`` (the Python API) and the jars
# must share a minor version; the jars are pinned apart from the pip package because a patch release of the
# Python package can reach PyPI without a matching jar on Maven Central (delta-spark 4.4.1 has none for Spark
# 4.2), and a session must never start half-configured.
DELTA_VERSION = "4.4.0"
SCALA_BINARY_VERSION = "2.13"
APP_NAME = "churn-platform"
LOG_LEVEL = "WARN"
COMPLETE_MARKER = "jars.json"  # written last: a folder without it is an interrupted download
# The AWS SDK (v2) that each Hadoop's hadoop-aws was built against (its hadoop-project POM), and the SDK's modules
# that s3a uses: together 13 MB, where the SDK's all-in-one bundle that hadoop-aws names is 650 MB.
AWS_SDK_FOR_HADOOP = {"3.5.0": "2.35.4"}
AWS_SDK_MODULES = ("s3", "s3-transfer-manager")
# What the s3a fetch leaves out though Spark does not ship it: the Delta jars, always loaded too, bring it.
PROVIDED_BY_DELTA = frozenset({"commons-logging"})

DELTA_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# Settings every session gets, classic or Connect: runtime SQL settings.
RUNTIME_CONF = {
    # Wall-clock dates and times everywhere are UTC; a session in another zone would move day boundaries.
    "spark.sql.session.timeZone": "UTC",
    # Parquet written by pyarrow and pandas carries zone-less timestamps: keep them zone-less.
    "spark.sql.parquet.inferTimestampNTZ.enabled": "true",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    # A training set has dozens of columns: print its plans whole instead of warning about truncating them.
    "spark.sql.debug.maxToStringFields": "500",
}


@dataclass(frozen=True)
class CachedJars:
    """A library and its dependencies, cached from Maven Central for this pyspark (Delta; s3a for object stores)."""

    coordinate: str  # group:artifact:version on Maven Central
    folder: Path

    @property
    def marker(self) -> Path:
        return self.folder / COMPLETE_MARKER

    def cached(self) -> list[Path] | None:
        """The jar files, if a complete download is in the cache (and every file is still there)."""
        if not self.marker.exists():
            return None
        names = json.loads(self.marker.read_text())["jars"]
        paths = [self.folder / name for name in names]
        return paths if all(p.exists() for p in paths) else None


def spark_minor_version() -> str:
    import pyspark

    return ".".join(pyspark.__version__.split(".")[:2])


def delta_coordinate() -> str:
    """The Maven coordinate of Delta for the installed pyspark, e.g. ``io.delta:delta-spark_4.2_2.13:4.4.0``."""
    return f"io.delta:delta-spark_{spark_minor_version()}_{SCALA_BINARY_VERSION}:{DELTA_VERSION}"


def delta_jars(jars_cache: Path) -> CachedJars:
    """Where this pyspark's Delta jars sit in the cache folder ``jars_cache`` (fetched or not)."""
    coordinate = delta_coordinate()
    return CachedJars(coordinate=coordinate, folder=Path(jars_cache) / coordinate.replace(":", "_"))


def hadoop_version() -> str:
    """The Hadoop client this pyspark ships (``hadoop-client-api-3.5.0.jar`` -> ``3.5.0``)."""
    found = sorted(_pyspark_jars_dir().glob("hadoop-client-api-*.jar"))
    if not found:
        raise RuntimeError(f"no hadoop-client-api jar in {_pyspark_jars_dir()}: is pyspark installed completely?")
    return found[-1].name.removeprefix("hadoop-client-api-").removesuffix(".jar")


def s3a_jars(jars_cache: Path) -> CachedJars:
    """Where the s3a connector of this pyspark's Hadoop sits in the cache folder ``jars_cache`` (fetched or not)."""
    coordinate = f"org.apache.hadoop:hadoop-aws:{hadoop_version()}"
    return CachedJars(coordinate=coordinate, folder=Path(jars_cache) / coordinate.replace(":", "_"))


def _s3a_ivy_module(hadoop: str) -> str:
    """hadoop-aws, with the AWS SDK's modules that s3a uses instead of the SDK's 650 MB all-in-one bundle."""
    sdk = AWS_SDK_FOR_HADOOP.get(hadoop)
    if sdk is None:
        raise RuntimeError(
            f"no AWS SDK version known for Hadoop {hadoop} (spark_jobs.session.AWS_SDK_FOR_HADOOP): add the one its "
            "hadoop-project POM names (aws-java-sdk-v2.version)"
        )
    modules = "".join(
        f'    <dependency org="software.amazon.awssdk" name="{name}" rev="{sdk}" conf="default->master,runtime"/>\n'
        for name in AWS_SDK_MODULES
    )
    return (
        '<ivy-module version="2.0">\n  <info organisation="local" module="s3a"/>\n'
        '  <configurations><conf name="default"/></configurations>\n  <dependencies>\n'
        f'    <dependency org="org.apache.hadoop" name="hadoop-aws" rev="{hadoop}" conf="default->master,runtime">\n'
        '      <exclude org="software.amazon.awssdk" module="bundle"/>\n    </dependency>\n'
        f"{modules}  </dependencies>\n</ivy-module>\n"
    )


def _pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def _artifact_name(jar_file: str, with_group: bool = False) -> str:
    """``parquet-hadoop-1.17.0.jar`` (or ``org.apache.parquet_parquet-hadoop-1.16.0.jar`` as Ivy names it,
    ``with_group``) -> ``parquet-hadoop``."""
    name = jar_file.split("_", 1)[1] if with_group else jar_file
    match = re.match(r"^(.+?)-\d[^-]*(-[a-zA-Z0-9]+)?\.jar$", name)
    return match.group(1) if match else name.removesuffix(".jar")


def fetch_delta_jars(jars_cache: Path, force: bool = False) -> list[Path]:
    """Resolve Delta and its dependencies from Maven Central into the cache, once; return the jars to load.

    Uses the Ivy jar that pyspark itself ships (the resolver behind ``spark.jars.packages``), with Ivy's default
    public resolver, which is Maven Central. Idempotent: a complete cache is returned as is.
    """
    jars = delta_jars(jars_cache)
    group, artifact, version = jars.coordinate.split(":")
    return _fetch(jars, lambda _: ["-dependency", group, artifact, version, "-confs", "master,runtime"], force)


def fetch_s3a_jars(jars_cache: Path, force: bool = False) -> list[Path]:
    """Resolve Hadoop's s3a connector (``hadoop-aws`` of pyspark's Hadoop, and the AWS SDK modules it uses) into
    the cache, once, as ``fetch_delta_jars`` does Delta: what a session needs to reach an object store."""
    jars = s3a_jars(jars_cache)

    def module(staging: Path) -> list[str]:
        ivy_file = staging / "ivy.xml"
        ivy_file.write_text(_s3a_ivy_module(hadoop_version()))
        return ["-ivy", str(ivy_file), "-confs", "default"]

    return _fetch(jars, module, force, also_provided=PROVIDED_BY_DELTA)


def _fetch(
    jars: CachedJars,
    ivy_arguments: Callable[[Path], list[str]],
    force: bool,
    also_provided: frozenset[str] = frozenset(),
) -> list[Path]:
    """Run pyspark's Ivy with ``ivy_arguments(staging folder)`` and cache what it retrieves in ``jars.folder``,
    minus the libraries Spark already ships; the marker file is written last."""
    if not force and (found := jars.cached()) is not None:
        return found
    ivy_jars = sorted(_pyspark_jars_dir().glob("ivy-*.jar"))
    if not ivy_jars:
        raise RuntimeError(f"no Ivy jar in {_pyspark_jars_dir()}: is pyspark installed completely?")
    # Java is found the way Spark's own launcher finds it (JAVA_HOME, else PATH): the machine's, not a setting.
    java_home = Path(os.environ.get("JAVA_HOME", "/nonexistent"))
    java = str(java_home / "bin" / "java") if (java_home / "bin" / "java").exists() else shutil.which("java")
    if java is None:
        raise RuntimeError("no `java` on PATH (or in JAVA_HOME): Spark needs Java 17 or 21")
    group, artifact, _ = jars.coordinate.split(":")
    jars.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=jars.folder.parent))
    log.warning("fetching %s and its dependencies from Maven Central into %s (once)", jars.coordinate, jars.folder)
    try:
        retrieve = staging / "jars"
        cmd = [
            java, "-cp", str(ivy_jars[-1]), "org.apache.ivy.Main", *ivy_arguments(staging),
            "-cache", str(jars.folder.parent / "ivy-cache"),
            "-retrieve", str(retrieve / "[organisation]_[artifact]-[revision](-[classifier]).[ext]"),
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        retrieved = sorted(p.name for p in retrieve.glob("*.jar"))
        if done.returncode != 0 or not any(n.startswith(f"{group}_{artifact}-") for n in retrieved):
            raise RuntimeError(
                f"could not fetch {jars.coordinate} from Maven Central (exit {done.returncode}):\n"
                + "\n".join(done.stdout.splitlines()[-25:] + done.stderr.splitlines()[-10:])
            )
        # Spark already ships these libraries (often newer): a second copy would only shadow or be shadowed.
        provided = {_artifact_name(p.name) for p in _pyspark_jars_dir().glob("*.jar")} | also_provided
        keep = [n for n in retrieved if _artifact_name(n, with_group=True) not in provided]
        if jars.folder.exists():
            shutil.rmtree(jars.folder)
        jars.folder.mkdir()
        for name in keep:
            os.replace(retrieve / name, jars.folder / name)
        skipped = sorted(set(retrieved) - set(keep))
        jars.marker.write_text(json.dumps({"coordinate": jars.coordinate, "jars": keep, "provided_by_spark": skipped}))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [jars.folder / n for n in keep]


def _local_cores(master: str) -> int:
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\d+)?\]", master)
    if match and match.group(1) != "*":
        return int(match.group(1))
    return os.cpu_count() or 2


def session_conf(master: str, driver_memory: str, jars: list[Path], driver_java_options: str = "") -> dict[str, str]:
    """Every setting of a classic (non-Connect) session, as a plain dict (printed by ``--show-conf``)."""
    conf = {
        **DELTA_CONF,
        **RUNTIME_CONF,
        "spark.jars": ",".join(str(p) for p in jars),
        "spark.driver.memory": driver_memory,
        "spark.ui.showConsoleProgress": "false",  # progress bars garble Dagster's captured logs
        # Delta's VACUUM deletes files in parallel on the executors instead of one by one on the driver.
        "spark.databricks.delta.vacuum.parallelDelete.enabled": "true",
    }
    if driver_java_options.strip():
        conf["spark.driver.extraJavaOptions"] = driver_java_options
    if master.startswith("local"):
        # A shuffle of this project's data fits a few tasks per core; Spark's default of 200 mostly waits on
        # scheduling. Clusters keep the default and let adaptive execution coalesce.
        partitions = str(max(2, 2 * _local_cores(master)))
        conf["spark.sql.shuffle.partitions"] = partitions
        # Delta rebuilds a table's state from its log with a shuffle of 50 partitions by default: on a few cores
        # that is seconds of task overhead on every commit and read of a small table.
        conf["spark.databricks.delta.snapshotPartitions"] = partitions
        # Listing a few hundred daily partition folders is instant on the driver; a Spark job for it is not.
        conf["spark.sql.sources.parallelPartitionDiscovery.threshold"] = "1024"
        # Delta's VACUUM lists a table's folders in a job of this many tasks (Spark's default: 10,000, nearly all
        # empty): about 50 s per VACUUM of a small table on two cores, against about 8 s at a few per core.
        conf["spark.sql.sources.parallelPartitionDiscovery.parallelism"] = partitions
        conf["spark.driver.host"] = "127.0.0.1"  # no dependence on the host name resolving
        conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def connect_server_conf() -> dict[str, str]:
    """What a Spark Connect server needs for these jobs: Delta on its class path and as its catalog."""
    return {"spark.jars.packages": delta_coordinate(), **DELTA_CONF, **RUNTIME_CONF}


def connect_server_arguments(jars_cache: Path | None = None) -> list[str]:
    """The ``spark-submit`` arguments that give a Spark Connect server Delta (``connect_server_conf``).

    Without ``jars_cache``, ``--packages``: the server resolves Delta from Maven Central when it starts. With it,
    ``--jars`` of the cached files (fetched once if missing): the server starts offline, on the very jars the
    classic sessions load.
    """
    conf = connect_server_conf()
    coordinate = conf.pop("spark.jars.packages")
    if jars_cache is None:
        jars = ["--packages", coordinate]
    else:
        jars = ["--jars", ",".join(str(p) for p in fetch_delta_jars(jars_cache))]
    return [*jars, *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}"))]


def build_session(
    master: str,
    driver_memory: str,
    jars_cache: Path,
    app_name: str = APP_NAME,
    extra_conf: dict[str, str] | None = None,
    driver_java_options: str = "",
    object_store: ObjectStore | None = None,
) -> SparkSession:
    """Start (or join) the process's Spark session, configured for Delta.

    ``driver_memory``, ``jars_cache`` and ``driver_java_options`` (flags of the driver's JVM) configure a classic
    session; Spark Connect (``sc://``) ignores them (the server owns its JVM, its memory and its class path).
    ``object_store``: the session also reads and writes ``s3://`` locations there, through the cached s3a jars
    (a classic session; a Connect server is given them when it starts).
    """
    from pyspark.sql import SparkSession

    if master.startswith("sc://"):
        builder = SparkSession.builder.remote(master).appName(app_name)
        for key, value in {**RUNTIME_CONF, **(extra_conf or {})}.items():
            builder = builder.config(key, value)
        return builder.getOrCreate()

    jars = fetch_delta_jars(jars_cache)
    store_conf: dict[str, str] = {}
    if object_store is not None:
        jars = [*jars, *fetch_s3a_jars(jars_cache)]
        store_conf = object_store.spark_conf()
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no host-name lookup, and no warning about it
    builder = SparkSession.builder.master(master).appName(app_name)
    conf = session_conf(master, driver_memory, jars, driver_java_options)
    for key, value in {**conf, **store_conf, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(LOG_LEVEL)
    return session


_lock = threading.Lock()
_session: SparkSession | None = None
_starting = False  # a thread of start_in_background is starting the session and warming it


def get_spark(
    master: str | None = None,
    driver_memory: str | None = None,
    jars_cache: Path | None = None,
    extra_conf: dict[str, str] | None = None,
    driver_java_options: str = "",
    object_store: ObjectStore | None = None,
) -> SparkSession:
    """The one session of this process: created on first use, then reused by every job and asset.

    The arguments (those of ``build_session``) only matter for the call that creates the session, and that call
    must name all three; later calls may omit them and get the live session.
    """
    global _session
    with _lock:
        if _session is None or _is_stopped(_session):
            if master is None or driver_memory is None or jars_cache is None:
                raise ValueError(
                    "no Spark session in this process yet: the first get_spark() call must name master, "
                    f"driver_memory and jars_cache (got {master!r}, {driver_memory!r}, {jars_cache!r})"
                )
            _session = build_session(master, driver_memory, jars_cache, extra_conf=extra_conf,
                                     driver_java_options=driver_java_options, object_store=object_store)  # fmt: skip
        return _session


def start_in_background(start: Callable[[], SparkSession], warm_up: Callable[[SparkSession], None]) -> bool:
    """Start this process's session on a thread of its own, then ``warm_up`` it, unless a session is already up
    or being started. Returns whether a thread was started.

    A run executed in one process (the main command's story, ``cli run``, a night of ``bench/nightly.py``) reaches
    its first Spark step only after the raw tables and dbt; a JVM started and warmed meanwhile is ready by then.
    ``start`` must be a ``get_spark`` call naming the session's settings: a step that asks for the session while
    the thread builds it waits on the same lock, so there is still one session. A failure here is only logged: the
    step's own call then raises it.
    """
    global _starting
    if not _lock.acquire(blocking=False):
        return False  # a session is being built right now
    try:
        if _starting or (_session is not None and not _is_stopped(_session)):
            return False
        _starting = True
    finally:
        _lock.release()

    def run() -> None:
        global _starting
        try:
            warm_up(start())
        except Exception:  # reported here; the step that needs the session raises it itself
            log.warning("starting the Spark session in the background failed", exc_info=True)
        finally:
            _starting = False

    threading.Thread(target=run, name="spark-session-start", daemon=True).start()
    return True


def _is_stopped(session: SparkSession) -> bool:
    try:
        return session.sparkContext._jsc is None  # classic session whose context was stopped
    except Exception:  # Spark Connect has no SparkContext: ask the server instead
        try:
            session.version  # noqa: B018 - a round trip that fails once the session is closed
            return False
        except Exception:
            return True


def add_session_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every job's command line needs to start its session; read back with ``session_from_arguments``."""
    group = parser.add_argument_group("Spark session")
    group.add_argument("--master", required=True, help="local[*], local[N], spark://..., k8s://... or sc://...")
    group.add_argument("--driver-memory", required=True, help="e.g. 2g (a classic session's driver)")
    group.add_argument("--jars-cache", type=Path, required=True, help="the folder the Delta jars are cached in")
    group.add_argument(
        "--driver-java-options",
        default="",
        help="flags of a classic session's driver JVM (--driver-java-options=-X...)",
    )
    store = parser.add_argument_group(
        "object store (for s3:// locations; the keys come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
        "wherever AWS's clients find them)"
    )
    store.add_argument("--s3-endpoint-url", help="an S3-compatible server of its own, e.g. http://127.0.0.1:9000")
    store.add_argument("--s3-region", default="us-east-1")


def object_store_from_arguments(args: argparse.Namespace, *locations: object) -> ObjectStore | None:
    """The object store the command line names, if it names one or any of ``locations`` is an ``s3://`` URI."""
    if args.s3_endpoint_url is None and not any(is_uri(str(location)) for location in locations):
        return None
    return ObjectStore(endpoint_url=args.s3_endpoint_url, region=args.s3_region)


def session_from_arguments(args: argparse.Namespace, object_store: ObjectStore | None = None) -> SparkSession:
    return get_spark(master=args.master, driver_memory=args.driver_memory, jars_cache=args.jars_cache,
                     driver_java_options=args.driver_java_options, object_store=object_store)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="python -m spark_jobs.session")
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--fetch-jars", action="store_true", help="only fetch the Delta jars into --jars-cache")
    action.add_argument("--show-conf", action="store_true", help="print the session settings for this machine")
    action.add_argument(
        "--connect-server-conf",
        action="store_true",
        help="print spark-submit arguments for a Connect server (--jars from --jars-cache if given, else --packages)",
    )
    parser.add_argument("--master", help="needed to show the settings or start a session")
    parser.add_argument("--driver-memory", help="needed to show the settings or start a session")
    parser.add_argument("--jars-cache", type=Path, help="the folder the Delta jars are cached in (all but Connect)")
    args = parser.parse_args(argv)
    if args.connect_server_conf:
        print(" ".join(shlex.quote(arg) for arg in connect_server_arguments(args.jars_cache)))
        return 0
    needed = ["jars_cache"] if args.fetch_jars else ["master", "driver_memory", "jars_cache"]
    missing = [f"--{name.replace('_', '-')}" for name in needed if getattr(args, name) is None]
    if missing:
        parser.error(f"the arguments {', '.join(missing)} are required here")
    jars = fetch_delta_jars(args.jars_cache)
    if args.fetch_jars:
        print(f"{len(jars)} Delta jars cached in {jars[0].parent}")
        return 0
    if args.show_conf:
        print(json.dumps(session_conf(args.master, args.driver_memory, jars), indent=2))
        return 0
    spark = build_session(args.master, args.driver_memory, args.jars_cache)
    print(f"Spark {spark.version} on {args.master}: Delta {DELTA_VERSION} ready")
    spark.stop()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main())
