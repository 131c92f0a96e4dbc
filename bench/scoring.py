"""Benchmark: batch scoring of 1,000,000 customers, end to end and the predict step, against raw predict_proba.

    .venv/bin/python bench/scoring.py [--customers 1000000] [--features 65] [--data-root /tmp/bench_scoring]

Setup (not timed): a wide synthetic snapshot of ``--customers`` customers with as many feature columns as the dbt
export (``--features``, numbers and five categories) in a Delta offline store; a HistGradientBoosting champion with
the production parameters (200 iterations) trained on a sample, logged and promoted through the ML domain's own
code into a local MLflow store.

Timed, in the same process:

* raw:     ``model.predict_proba(X)`` on the model's input already in memory (the ceiling);
* predict: ``score_snapshot`` on the snapshot frame (typing the input, predicting, risk bands, the output frame);
* end to end: real Dagster materializations of ``scoring/batch_scores`` in a fresh process, whose peak memory is
  reported (load the champion from the registry, read the snapshot from Delta, predict, replace the day in the
  Delta scores table, export the top-risk list and read the day back for the sanity check), both as the asset's
  own wall time and as the whole run.

Throughput ratios are raw time / step time: 1.0 means as fast as raw ``predict_proba``. Targets: end to end >= 0.5,
predict step >= 0.9.
"""

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from spark_jobs.contract import CATEGORICAL, NUMERIC, Contract, Feature

DAY = dt.date(2025, 4, 1)
CATEGORIES = {
    "plan": ["basic", "standard", "premium"],
    "contract": ["monthly", "annual"],
    "region": ["north", "south", "east", "west", "central"],
    "acquisition_channel": ["organic", "paid_search", "social", "referral", "partner"],
    "payment_method": ["card", "paypal", "direct_debit"],
}


def wide_snapshot(customers: int, numeric: int, day: dt.date, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``customers`` rows: keys, ``numeric`` numeric features (counts, rates, amounts) and five categories; and
    whether each churned (a logistic function of engagement, price and contract)."""
    rng = np.random.default_rng(seed)
    engagement = rng.gamma(3.0, 1.0 / 3.0, customers)
    columns: dict[str, object] = {
        "customer_id": np.array([f"c{i:07d}" for i in range(customers)], dtype=object),
        "snapshot_date": np.full(customers, day),
        "monthly_price": np.round(rng.choice([9.99, 15.99, 22.99], customers), 2),
        "tenure_days": rng.integers(1, 1500, customers),
    }
    for i in range(numeric - 2):
        kind = i % 3
        if kind == 0:  # counts over a window
            columns[f"count_{i}"] = rng.poisson(engagement * (1 + i % 7), customers)
        elif kind == 1:  # rates
            columns[f"rate_{i}"] = np.round(rng.gamma(2.0, engagement + 0.1), 4)
        else:  # amounts, with gaps
            values = np.round(rng.gamma(1.5, 20 * engagement + 1), 2)
            values[rng.random(customers) < 0.01] = np.nan
            columns[f"amount_{i}"] = values
    for name, values in CATEGORIES.items():
        columns[name] = np.array(values, dtype=object)[rng.integers(0, len(values), customers)]
    frame = pd.DataFrame(columns)
    logit = -2.5 - 0.3 * engagement + 0.02 * (frame["monthly_price"] - 15) + 0.5 * (frame["contract"] == "monthly")
    churned = (rng.random(customers) < 1 / (1 + np.exp(-logit))).astype("int64")
    return frame, churned


def bench_contract(frame: pd.DataFrame) -> Contract:
    """The benchmark's problem, as a team would declare it: its customers and snapshot day, ``wide_snapshot``'s
    features (the categories categorical, every other column numeric), its label, and what the top-risk list shows."""
    keys = ("customer_id", "snapshot_date")
    numeric = [c for c in frame.columns if c not in keys and c not in CATEGORIES]
    return Contract(
        entity=keys[:1],
        features_model="bench_features",
        as_of=keys[1],
        features=tuple([Feature(c, NUMERIC) for c in numeric] + [Feature(c, CATEGORICAL) for c in CATEGORIES]),
        feature_set_version="1",
        labels_model="bench_labels",
        label_as_of=keys[1],
        prediction_time="prediction_time",
        label="churned",
        horizon_days=30,
        top_risk_columns=("monthly_price", "tenure_days", *CATEGORIES),
        source="bench/scoring.py",
    )


def contract_path(root: Path) -> Path:
    """Where the benchmark leaves its contract for the process that runs the asset."""
    return root / "bench_contract.json"


def write_snapshot(lake: Path, frame: pd.DataFrame) -> None:
    from deltalake import write_deltalake

    table = pa.Table.from_pandas(frame, preserve_index=False)
    index = table.schema.get_field_index("snapshot_date")
    table = table.set_column(index, "snapshot_date", table["snapshot_date"].cast(pa.date32()))
    write_deltalake(
        str(lake / "offline_store" / "feature_snapshots"), table, mode="overwrite", partition_by=["snapshot_date"]
    )


def register_champion(
    lake: Path, store: object, contract: Contract, frame: pd.DataFrame, labels: np.ndarray, rows: int
) -> str:
    """A production-shaped model (default TrainingParams) trained on ``rows`` sampled customers over 8 snapshot
    days, logged, registered and promoted by the ML domain's code."""
    from deltalake import CommitProperties, write_deltalake

    from dagster_project.defs.ml import registry, tracking
    from dagster_project.defs.ml.training import TrainingParams, train_from_training_set

    sample = frame.sample(n=min(rows, len(frame)), random_state=0)
    churned = pd.Series(labels, index=frame.index).loc[sample.index]
    parts = []
    for k in range(8):  # 4 days train, a 30-day gap, 4 days validate
        day = DAY - dt.timedelta(days=80 - k) if k < 4 else DAY - dt.timedelta(days=8 - k)
        part = sample.drop(columns=["snapshot_date"]).assign(
            prediction_time=pd.Timestamp(day + dt.timedelta(days=1)),
            label_snapshot_date=day,
            churned=churned.to_numpy(),
            feature_snapshot_date=day,
        )
        parts.append(part)
    training = pa.Table.from_pandas(pd.concat(parts, ignore_index=True), preserve_index=False)
    for name, dtype in (
        ("prediction_time", pa.timestamp("us")),
        ("label_snapshot_date", pa.date32()),
        ("feature_snapshot_date", pa.date32()),
    ):
        training = training.set_column(training.schema.get_field_index(name), name, training[name].cast(dtype))
    path = lake / "offline_store" / "training_set"
    metadata = json.dumps({"feature_store_version": 0, "churn_horizon_days": 30})
    write_deltalake(
        str(path),
        training,
        mode="overwrite",
        commit_properties=CommitProperties(custom_metadata={"userMetadata": metadata}),
    )
    result = train_from_training_set(
        str(path), contract, None, TrainingParams(validation_days=4, importance_sample_rows=500, importance_repeats=1)
    )
    registered = tracking.log_and_register(result, store, dagster_run_id="bench")
    decision = registry.run_promotion_gate(store, contract, auc_floor=0.5, tolerance=1.0)
    if not decision.promoted:
        raise RuntimeError(f"the benchmark's champion was not promoted: {decision.reason}")
    return registered.version


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


RESULT_MARKER = "ASSET_RESULT "


def asset_runs(root: Path, repeats: int) -> None:
    """In a fresh process: materialize ``scoring/batch_scores`` ``repeats`` times; print timings and peak memory."""
    os.environ["PLATFORM_DATA_ROOT"] = str(root)
    from dataclasses import replace

    import dagster as dg

    from dagster_project.defs.scoring.assets import build_batch_scores
    from dagster_project.partitions import daily_partitions
    from dagster_project.problem import load_problem
    from dagster_project.resources import ContractResource, LakeResource, MlflowResource
    from dagster_project.settings import get_settings

    settings = get_settings()
    contract = Contract.from_file(contract_path(root))
    resources = {
        "lake": LakeResource(root=str(settings.lake_root)),
        "mlflow": MlflowResource.from_settings(settings),
        "contract": ContractResource.of(contract),
    }
    # The definitions' problem, declaring the benchmark's columns instead of the example's.
    batch_scores = build_batch_scores(daily_partitions(settings), replace(load_problem(settings), contract=contract))
    instance = dg.DagsterInstance.ephemeral()
    runs = []
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = dg.materialize(
            [batch_scores], partition_key=DAY.isoformat(), resources=resources, instance=instance, run_config=quiet
        )
        run_seconds = time.perf_counter() - t0
        [event] = result.get_asset_materialization_events()
        metadata = {k: v.value for k, v in event.materialization.metadata.items() if k.endswith("_seconds")}
        step = next(e for e in result.all_events if e.is_step_success)
        runs.append({"run": run_seconds, "asset": step.event_specific_data.duration_ms / 1000, **metadata})
    print(RESULT_MARKER + json.dumps({"runs": runs, "peak_rss_gb": peak_rss_gb()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=65, help="feature columns (the dbt export has 65)")
    parser.add_argument("--train-rows", type=int, default=50_000, help="customers sampled to train the champion")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best of each is reported")
    parser.add_argument("--data-root", type=Path, default=None, help="default: a temporary folder, removed after")
    parser.add_argument("--asset-only", action="store_true", help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args(argv)
    if args.asset_only:
        asset_runs(args.data_root, args.repeats)
        return 0

    root = args.data_root or Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    os.environ["PLATFORM_DATA_ROOT"] = str(root)  # before the project reads its settings
    from dagster_project.defs.ml.training import model_input
    from dagster_project.defs.scoring import scores as scoring
    from dagster_project.defs.scoring.champion import load_champion
    from dagster_project.resources import MlflowResource
    from dagster_project.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    lake = Path(settings.lake_root)
    store = MlflowResource.from_settings(settings)
    numeric = args.features - len(CATEGORIES)
    try:
        started = time.perf_counter()
        frame, labels = wide_snapshot(args.customers, numeric, DAY)
        contract = bench_contract(frame)
        contract_path(root).parent.mkdir(parents=True, exist_ok=True)
        contract_path(root).write_text(contract.to_json())
        write_snapshot(lake, frame)
        version = register_champion(lake, store, contract, frame, labels, args.train_rows)
        del frame, labels
        print(
            f"setup: {args.customers:,} customers x {args.features} features, champion v{version} "
            f"({time.perf_counter() - started:.0f} s, untimed)",
            flush=True,
        )

        # End to end first, in a fresh process: its memory is the asset's own, not this script's.
        child = subprocess.run(
            [sys.executable, __file__, "--asset-only", "--data-root", str(root), "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            env={**os.environ, "PLATFORM_DATA_ROOT": str(root)},
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith(RESULT_MARKER)]
        if child.returncode != 0 or not lines:
            print(child.stdout[-2000:], child.stderr[-4000:])
            return 1
        asset = json.loads(lines[-1].removeprefix(RESULT_MARKER))

        champion = load_champion(store)
        model = champion.model
        snapshot = scoring.read_feature_snapshot(
            lake, DAY, contract, columns=champion.feature_columns(), optional=contract.top_risk_columns
        )
        X = model_input(snapshot, model)

        def best(fn: object, repeats: int) -> float:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()  # type: ignore[operator]
                times.append(time.perf_counter() - t0)
            return min(times)

        raw = best(lambda: model.predict_proba(X), args.repeats)
        predict = best(
            lambda: scoring.score_snapshot(
                model, snapshot, contract, model_name=champion.name, model_version=champion.version
            ),
            args.repeats,
        )
    finally:
        if args.data_root is None:
            shutil.rmtree(root, ignore_errors=True)

    fastest = min(asset["runs"], key=lambda r: r["asset"])
    asset_seconds, run_seconds = fastest["asset"], min(r["run"] for r in asset["runs"])
    n = args.customers
    print(
        f"\nscoring {n:,} customers ({args.features} features, HistGradientBoosting, 200 iterations); "
        f"best of {args.repeats}; {os.cpu_count()} cores"
    )
    print(f"  {'step':<34}{'seconds':>9}{'rows/s':>14}{'ratio to raw':>15}")
    rows = [
        ("raw predict_proba (in memory)", raw),
        ("predict step (score_snapshot)", predict),
        ("asset end to end (step wall time)", asset_seconds),
        ("Dagster run end to end", run_seconds),
    ]
    for name, seconds in rows:
        print(f"  {name:<34}{seconds:>9.2f}{n / seconds:>14,.0f}{raw / seconds:>15.2f}")
    parts = ("load_model_seconds", "read_seconds", "predict_seconds", "write_seconds")
    rest = asset_seconds - sum(fastest[k] for k in parts)
    print(
        "  inside the asset: "
        + ", ".join(f"{k.removesuffix('_seconds')} {fastest[k]:.2f} s" for k in parts)
        + f"; sanity check and the rest {rest:.2f} s"
    )
    print(f"  peak memory (RSS) of the process running the asset: {asset['peak_rss_gb']:.2f} GB")
    ok_e2e, ok_predict = raw / asset_seconds >= 0.5, raw / predict >= 0.9
    print(
        f"targets: end to end >= 0.5: {'met' if ok_e2e else 'MISSED'} ({raw / asset_seconds:.2f}); "
        f"predict step >= 0.9: {'met' if ok_predict else 'MISSED'} ({raw / predict:.2f})"
    )
    return 0 if ok_e2e and ok_predict else 1


if __name__ == "__main__":
    sys.exit(main())
