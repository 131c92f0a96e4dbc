"""Benchmark: the prediction service's latency for one entity per request, measured by a client over HTTP.

    .venv/bin/python bench/serving_latency.py [--requests 500] [--rate 200] [--data-root /tmp/bench_serving]

Setup (not timed): the churn world of the tests (``tests/churn_world.py``): a champion trained on 60 days and
registered, the snapshot of a later day written to the Delta offline store, read back as batch scoring reads it and
published into the embedded SQLite online store. Then ``python -m dagster_project.service`` starts in its own
process, as ``make serve`` starts it, and is warmed up.

Timed, from the client (keep-alive connection, one request in flight): ``--requests`` one-entity predictions back
to back, then the same number paced at ``--rate`` requests per second. Target: p99 <= 10 ms at 200 req/s on 2
cores. The service's own view (its stage histograms' means) is printed beside.
"""

import argparse
import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def setup(root: Path) -> tuple[dict[str, str], list[str]]:
    from churn_world import CONTRACT, START, ChurnWorld, days, register_champion
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from dagster_project.defs.scoring.scores import read_feature_snapshot
    from dagster_project.online_store import SqliteOnlineStore

    template = root / "template" / "mlflow.db"
    template.parent.mkdir(parents=True, exist_ok=True)
    SqlAlchemyStore(f"sqlite:///{template}", (template.parent / "artifacts").as_uri())
    store = register_champion(root, template, ChurnWorld(), days(START, 60))
    day = START + dt.timedelta(days=75)
    ChurnWorld().write_feature_snapshots(root / "lake", [day])
    snapshot = read_feature_snapshot(root / "lake", day, CONTRACT)
    data = root / "data"
    SqliteOnlineStore(data / "online" / "features.sqlite").publish(
        snapshot,
        day=day,
        entity_columns=CONTRACT.entity,
        feature_names=[f.name for f in CONTRACT.features],
        delta_version=None,
    )
    env = {
        "PLATFORM_DATA_ROOT": str(data),
        "PLATFORM_MLFLOW_TRACKING_URI": store.tracking_uri,
        "PLATFORM_MLFLOW_ARTIFACT_ROOT": store.artifact_root,
    }
    return env, list(snapshot[CONTRACT.entity[0]])


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms, max {ms.max():.2f} ms (n={len(ms)})"


def run(client: httpx.Client, entities: list[str], count: int, rate: float | None) -> list[float]:
    rng = random.Random(0)
    latencies = []
    next_at = time.perf_counter()
    for _ in range(count):
        if rate:
            next_at += 1 / rate
            time.sleep(max(0.0, next_at - time.perf_counter()))
        started = time.perf_counter()
        answer = client.post("/predict", json={"entities": [rng.choice(entities)]})
        latencies.append(time.perf_counter() - started)
        assert answer.status_code == 200, answer.text
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--data-root", type=Path, default=None)
    args = parser.parse_args()
    root = args.data_root or Path(tempfile.mkdtemp(prefix="bench_serving_"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    env, entities = setup(root)
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_project.service"],
        cwd=REPO,
        env={**os.environ, **env, "PLATFORM_SERVING__PORT": str(args.port)},
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{args.port}", timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "the service did not get ready"
                time.sleep(0.2)
            run(client, entities, 100, None)  # warm-up
            back_to_back = run(client, entities, args.requests, None)
            paced = run(client, entities, args.requests, args.rate)
            metrics = client.get("/metrics").text
        print(f"back to back:       {percentiles(back_to_back)}")
        print(f"paced at {args.rate:g}/s:   {percentiles(paced)}")
        stages = {}
        for stage in ("parse", "lookup", "predict", "log"):
            total = float(re.search(rf'serving_stage_seconds_sum{{stage="{stage}"}} (\S+)', metrics)[1])
            count = float(re.search(rf'serving_stage_seconds_count{{stage="{stage}"}} (\S+)', metrics)[1])
            stages[stage] = round(total / count * 1000, 3)
        print(f"service stage means (ms): {json.dumps(stages)}")
    finally:
        server.terminate()
        server.wait(timeout=60)
        if args.data_root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
