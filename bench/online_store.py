"""Benchmark: publishing a snapshot into the online store, and looking entities up, on both backends.

    .venv/bin/python bench/online_store.py [--entities 100000] [--features 40] [--lookups 2000]

A synthetic snapshot of ``--entities`` entities (a text key) and ``--features`` float features (a few missing) is
published twice into each backend (the second publish replaces a full store, as every night after the first does),
then looked up at random: one entity per lookup (the prediction service's usual request) and 100 per lookup (a
batch request). SQLite is a file in a temporary folder; Redis is a ``redis-server`` started on a free port of
127.0.0.1 with persistence off, stopped at the end. Prints the publish seconds and the lookup latency p50/p99.
"""

import argparse
import datetime as dt
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dagster_project.online_store import OnlineStore, RedisOnlineStore, SqliteOnlineStore

DAY = dt.date(2025, 6, 1)


def snapshot(entities: int, features: int) -> tuple[pd.DataFrame, list[str]]:
    rng = np.random.default_rng(0)
    names = [f"f{i:02d}" for i in range(features)]
    values = rng.normal(size=(entities, features)) * 10.0 ** rng.integers(-3, 4, features)
    values[rng.random(values.shape) < 0.01] = np.nan
    frame = pd.DataFrame(values, columns=names)
    frame.insert(0, "entity_id", [f"e{i:07d}" for i in range(entities)])
    return frame, names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port).ping()
            return process, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


def _percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):.3f} ms, p99 {np.percentile(ms, 99):.3f} ms"


def measure(name: str, store: OnlineStore, frame: pd.DataFrame, names: list[str], lookups: int) -> None:
    publishes = []
    for _ in range(2):
        started = time.perf_counter()
        result = store.publish(frame, day=DAY, entity_columns=["entity_id"], feature_names=names, delta_version=1)
        publishes.append(time.perf_counter() - started)
    keys = frame["entity_id"].to_numpy()
    rng = np.random.default_rng(1)
    one, hundred = [], []
    for _ in range(lookups):
        key = [str(keys[rng.integers(len(keys))])]
        started = time.perf_counter()
        store.lookup(key)
        one.append(time.perf_counter() - started)
    for _ in range(max(lookups // 4, 1)):
        batch = [str(k) for k in keys[rng.integers(len(keys), size=100)]]
        started = time.perf_counter()
        store.lookup(batch)
        hundred.append(time.perf_counter() - started)
    print(
        f"{name:<7} publish {len(frame):,} x {len(names)}: first {publishes[0]:.2f} s, replacing {publishes[1]:.2f} s "
        f"({result.bytes_written / 1e6:.1f} MB)\n"
        f"        lookup 1 entity:    {_percentiles(one)}\n"
        f"        lookup 100 entities: {_percentiles(hundred)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=40)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    args = parser.parse_args()
    frame, names = snapshot(args.entities, args.features)
    folder = Path(tempfile.mkdtemp(prefix="bench-online-"))
    redis_process, url = _start_redis(folder)
    try:
        if args.backend in ("sqlite", "both"):
            sqlite = SqliteOnlineStore(folder / "online.sqlite")
            measure("sqlite", sqlite, frame, names, args.lookups)
            sqlite.close()
        if args.backend in ("redis", "both"):
            redis_store = RedisOnlineStore(url, prefix="bench")
            measure("redis", redis_store, frame, names, args.lookups)
            redis_store.close()
    finally:
        redis_process.terminate()
        redis_process.wait(timeout=20)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
