"""The main command: run the platform on the embedded default for a range of days, and open its UI.

    python -m dagster_project.cli run --days 120 [--scenario price_rise] [--drift-day 91]
    python -m dagster_project.cli ui
    python -m dagster_project.cli jars
    python -m dagster_project.cli manifest
    python -m dagster_project.cli contract
    python -m dagster_project.cli bucket s3://NAME [-- COMMAND ...]

The whole story: the data layers of every simulated day are built first in ranged runs of ``nightly_pipeline``
(as a backfill builds them); then, night by night, the nightly schedule's own request scores the day, checks drift
and realized performance; once enough labels have matured the first model is trained; the ``retrain_on_drift``
sensor is evaluated after every night and the retraining it requests runs at once. All of it is recorded in the
instance under the data root, so ``make ui`` shows the history afterwards.
(``dagster_project.story`` has the day-by-day logic.)
"""

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from dagster_project.instance import local_instance
from dagster_project.settings import REPO_ROOT, Scenario, get_settings

DEFAULT_DAYS = 120


def _days(start: dt.date, count: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(count)]


@contextmanager
def _runs_to_log(log_path: Path) -> Iterator[TextIO]:
    """Send everything the runs print (dbt, Spark's JVM, libraries) to ``log_path``, at the file-descriptor level so
    that subprocesses follow; yield the terminal, where the progress bar stays readable."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w")
    with open(log_path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()


def _story_settings(scenario: str | None, drift_day: int | None) -> None:
    """Put the story's scenario in the environment the definitions read (before they are imported).

    The story shows a drift, so the scenario defaults to ``price_rise`` unless the environment names one; the
    drift starts on day ``drift_day`` (1 = the first day) or on ``PLATFORM_SIMULATOR__DRIFT_START``.
    """
    chosen = scenario or os.environ.get("PLATFORM_SIMULATOR__SCENARIO") or Scenario.price_rise.value
    os.environ["PLATFORM_SIMULATOR__SCENARIO"] = chosen
    if drift_day is not None:
        start = get_settings().history_start
        os.environ["PLATFORM_SIMULATOR__DRIFT_START"] = (start + dt.timedelta(days=drift_day - 1)).isoformat()
    get_settings.cache_clear()


def run(days: int, start: dt.date | None, scenario: str | None = None, drift_day: int | None = None) -> int:
    _story_settings(scenario, drift_day)
    # Imported here so that `--help` answers at once, and the definitions see the story's settings.
    from dagster_project import story
    from dagster_project.definitions import defs as load_definitions
    from dagster_project.resources import MlflowResource

    defs = load_definitions()

    settings = get_settings()
    first = start or settings.history_start
    # The story's runs are in process and quick: nobody follows them live, so their events take the fast path.
    instance = local_instance(settings, fast_event_log=True)
    calendar = _days(first, days)
    print(f"data root: {settings.data_root}")
    print(
        f"source: {settings.source.value}, scenario: {settings.simulator.scenario.value} "
        f"from {settings.simulator.drift_start}, {settings.simulator.customers:,} customers"
    )
    first_model = story.first_training_day(settings)
    if calendar[-1] < first_model:
        print(
            f"note: the first model can be trained from {first_model} (labels need time to mature): run at least "
            f"{(first_model - first).days + 1} days to see scores, drift and retraining"
        )

    log_path = Path(settings.data_root) / "logs" / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    print(f"the runs' own output (dbt, Spark) goes to {log_path}")
    with _runs_to_log(log_path) as terminal:
        history = tqdm(total=len(calendar), desc="history (data layers)", unit="day", file=terminal)
        bars: dict[str, tqdm] = {}  # the nights' bar, opened when the history is done

        def built(first: dt.date, last: dt.date, success: bool) -> None:
            history.update((last - first).days + 1)
            history.set_postfix(upto=str(last), failed="" if success else "yes", refresh=False)

        def progress(record: story.DayRecord, summary: story.StorySummary) -> None:
            if "nights" not in bars:
                history.close()
                bars["nights"] = tqdm(total=len(calendar), desc="nights", unit="day", file=terminal)
            nights = bars["nights"]
            nights.update(1)
            nights.set_postfix(
                day=str(record.day),
                champion=f"v{record.champion}" if record.champion else "-",
                drift="-" if record.drift_share is None else f"{record.drift_share:.0%}",
                retrains=sum(r.reason != "bootstrap" for r in summary.retrains),
                refresh=False,
            )

        summary = story.run_story(
            defs, instance, settings, calendar, MlflowResource.from_settings(settings), progress, on_history=built
        )
        history.close()
        for bar in bars.values():
            bar.close()

    print()
    print(story.format_summary(summary))
    for table, counts in sorted(summary.totals.items()):
        print(
            f"  {table:<28} in {counts['rows_in']:>10,}  kept {counts['rows_kept']:>10,}"
            f"  quarantined {counts['rows_quarantined']:>7,}"
        )
    failed = [d.day.isoformat() for d in summary.days if not d.success]
    if failed:
        print(f"failed days: {', '.join(failed)} (see `make ui`, Runs)", file=sys.stderr)
        return 1
    print(
        f"Run history is in {settings.dagster_home}: `make ui` opens it (drift reports are linked from "
        "monitoring/drift_report)."
    )
    return 0


def ui(port: int) -> int:
    """``dagster dev`` on the instance the runs were recorded in, bound to the loopback interface."""
    local_instance(get_settings())  # sets DAGSTER_HOME and writes its dagster.yaml on first use
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    os.execvp(command[0], command)


def jars() -> int:
    """Fetch the Delta jars, and the s3a connector a lake on object storage needs, into the settings' cache
    (``PLATFORM_JARS_CACHE``) once; later Spark sessions start offline. ``spark_jobs`` reads no settings, so this
    is where the settings meet its jar cache."""
    from spark_jobs.session import fetch_delta_jars, fetch_s3a_jars

    for name, fetch in (("Delta", fetch_delta_jars), ("s3a", fetch_s3a_jars)):
        found = fetch(get_settings().jars_cache)
        print(f"{len(found)} {name} jars cached in {found[0].parent}")
    return 0


def bucket(uri: str, then: list[str]) -> int:
    """Create the object store's bucket of ``uri`` unless it exists (boto3, configured by AWS's own variables:
    ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``), then replace
    this process by ``then`` if given: how a service that writes there (MLflow's server in docker-compose) starts
    on an empty store."""
    import boto3
    from botocore.exceptions import ClientError

    from spark_jobs.object_store import bucket_key, is_uri

    if not is_uri(uri):
        raise SystemExit(f"not an object-store URI (s3://bucket[/prefix]): {uri}")
    name = bucket_key(uri).split("/", 1)[0]
    client = boto3.client("s3")
    try:
        client.head_bucket(Bucket=name)
        print(f"bucket {name}: there")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        region = client.meta.region_name
        where = {} if region in (None, "us-east-1") else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        client.create_bucket(Bucket=name, **where)
        print(f"bucket {name}: created")
    if then:
        sys.stdout.flush()
        os.execvp(then[0], then)
    return 0


def manifest() -> int:
    """Parse the problem's dbt project into its manifest ahead of time (CI, images): the definitions then load
    without running dbt."""
    from dagster_project.problem import dbt_project, prepare_manifest

    settings = get_settings()
    path = prepare_manifest(dbt_project(settings.problem_dir), settings.problem_dir, force=True)
    print(f"manifest of {settings.problem_dir.name}: {path}")
    return 0


def contract() -> int:
    """Print the problem's contract as JSON: what the Spark jobs' ``--contract`` reads when they run alone."""
    from dagster_project.problem import load_problem

    print(load_problem(get_settings()).contract.to_json())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dagster_project.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the whole story (nightly runs, schedule, sensor) for a range of days")
    run_parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help=f"how many days to run ({DEFAULT_DAYS})")
    run_parser.add_argument("--start", type=dt.date.fromisoformat, help="first day (default: the partitions' start)")
    run_parser.add_argument(
        "--scenario",
        choices=[s.value for s in Scenario],
        help="drift scenario (default: PLATFORM_SIMULATOR__SCENARIO, else price_rise)",
    )
    run_parser.add_argument(
        "--drift-day",
        type=int,
        help="the day the scenario starts, 1 = the first day "
        "(default: PLATFORM_SIMULATOR__DRIFT_START, 2025-04-01 = day 91)",
    )
    ui_parser = sub.add_parser("ui", help="open the Dagster UI (dagster dev) on the recorded history")
    ui_parser.add_argument("--port", type=int, default=3000)
    sub.add_parser("jars", help="fetch the Delta and s3a jars into PLATFORM_JARS_CACHE, once: Spark starts offline")
    sub.add_parser("manifest", help="parse the problem's dbt project (PLATFORM_PROBLEM_DIR) into its manifest")
    sub.add_parser("contract", help="print the problem's contract (entity, features, label) as JSON")
    bucket_parser = sub.add_parser("bucket", help="create an object store bucket unless it exists, then run a command")
    bucket_parser.add_argument("uri", help="s3://bucket[/prefix]")
    bucket_parser.add_argument("then", nargs=argparse.REMAINDER, help="-- the command to run afterwards")
    args = parser.parse_args(argv)
    if args.command == "bucket":
        return bucket(args.uri, args.then[1:] if args.then[:1] == ["--"] else args.then)
    if args.command == "ui":
        return ui(args.port)
    if args.command == "jars":
        return jars()
    if args.command == "manifest":
        return manifest()
    if args.command == "contract":
        return contract()
    return run(args.days, args.start, args.scenario, args.drift_day)


if __name__ == "__main__":
    sys.exit(main())
