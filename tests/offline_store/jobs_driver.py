"""Run several of the offline store's jobs, by their own command lines, in ONE Spark session of this process.

``python tests/offline_store/jobs_driver.py PLAN.json REPORT.json``: the plan names the session flags
(``--master`` ..., as every job takes them) and the steps, each a job of ``spark_jobs`` and its arguments. Each step
is that job's ``main(argv)``, exactly what ``python -m spark_jobs.<job> argv`` runs, so one session (and on a
cluster one application, whose executors warm up once) serves them all. The report holds each step's exit code,
its printed output and its seconds, the session's start-up seconds, and where the work ran: the master and the
executors of a classic session, or the marks of a Spark Connect client (no JVM in this process).

A test process already holds a SparkContext (one per process): drivers on a cluster or over Connect run here.
"""

import argparse
import contextlib
import importlib
import io
import json
import sys
import time
from pathlib import Path


def where_it_ran(spark) -> dict:
    from pyspark import SparkContext

    if hasattr(spark, "sparkContext") and not spark.__class__.__module__.startswith("pyspark.sql.connect"):
        sc = spark.sparkContext
        executors = [e.host() + ":" + str(e.port()) for e in sc._jsc.sc().statusTracker().getExecutorInfos()]
        return {"kind": "classic", "master": sc.master, "application_id": sc.applicationId, "executors": executors}
    return {
        "kind": "connect",
        "session_class": f"{spark.__class__.__module__}.{spark.__class__.__name__}",
        "jvm_in_client": SparkContext._gateway is not None,
        "server_master": spark.conf.get("spark.master"),
        "server_spark_version": spark.version,
    }


def run_steps(steps: list[dict], session: list[str]) -> list[dict]:
    """Each step's job ``main`` with the session flags, in order, until one fails: its exit, output, seconds."""
    done = []
    for step in steps:
        job = importlib.import_module(f"spark_jobs.{step['job']}")
        out, started = io.StringIO(), time.monotonic()
        with contextlib.redirect_stdout(out):
            code = job.main([*step["argv"], *session])
        seconds = round(time.monotonic() - started, 3)
        done.append({"name": step["name"], "exit": code, "stdout": out.getvalue(), "seconds": seconds})
        if code != 0:
            break
    return done


def main(plan_file: str, report_file: str) -> int:
    from spark_jobs.session import add_session_arguments, object_store_from_arguments, session_from_arguments

    plan = json.loads(Path(plan_file).read_text())
    parser = argparse.ArgumentParser()
    add_session_arguments(parser)
    started = time.monotonic()
    args = parser.parse_args(plan["session"])
    spark = session_from_arguments(args, object_store_from_arguments(args))  # the one session every step joins
    report = {"session_seconds": round(time.monotonic() - started, 3)}
    report["steps"] = run_steps(plan["steps"], plan["session"])
    report["ran_on"] = where_it_ran(spark)
    Path(report_file).write_text(json.dumps(report, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
