"""The story's event log (``dagster_project.event_log``): the same files as Dagster's own, read back whole by it."""

import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg

from dagster_project.event_log import SqliteEventLogStorage
from dagster_project.instance import local_instance
from dagster_project.settings import Settings

DAYS = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-08")


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def daily(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})


@dg.asset(partitions_def=DAYS, deps=[daily], check_specs=[dg.AssetCheckSpec("positive", asset="downstream")])
def downstream() -> dg.MaterializeResult:
    return dg.MaterializeResult(check_results=[dg.AssetCheckResult(passed=True)])


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(assets=[daily, downstream]).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, partition_key="2025-01-03")


def _summary(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str | None, str | None]]:
    """A run's events as Dagster's own storage reads them back: type, step and asset, in order."""
    return [
        (
            record.event_log_entry.dagster_event_type.value if record.event_log_entry.dagster_event_type else "log",
            record.event_log_entry.step_key,
            record.asset_key.to_user_string() if record.asset_key else None,
        )
        for record in instance.get_records_for_run(run_id, limit=10_000).records
    ]


def test_the_fast_event_log_writes_what_dagsters_own_reads_back_as_its_own_writes(settings: Settings) -> None:
    fast = local_instance(settings, fast_event_log=True)
    assert isinstance(fast.event_log_storage, SqliteEventLogStorage)
    fast_run = _run(fast)
    assert fast_run.success
    # Read back by Dagster's own class (what `make ui` opens), while the fast one's connections are still open.
    stock = local_instance(settings)
    assert type(stock.event_log_storage) is not SqliteEventLogStorage
    stock_run = _run(stock)
    assert _summary(stock, fast_run.run_id) == _summary(stock, stock_run.run_id)
    assert len(_summary(stock, fast_run.run_id)) > 10
    # The cross-run index: both runs' materializations and check results, whoever wrote them.
    key = dg.AssetKey("downstream")
    materialized = stock.fetch_materializations(key, limit=10).records
    assert {record.run_id for record in materialized} == {fast_run.run_id, stock_run.run_id}
    checks = stock.event_log_storage.get_asset_check_execution_history(dg.AssetCheckKey(key, "positive"), limit=10)
    assert {check.run_id for check in checks} == {fast_run.run_id, stock_run.run_id}
    # And the other way round: the fast one reads what Dagster's own wrote.
    assert _summary(fast, stock_run.run_id) == _summary(stock, stock_run.run_id)


def test_events_from_several_threads_are_all_stored(settings: Settings) -> None:
    fast = local_instance(settings, fast_event_log=True)
    barrier = threading.Barrier(4)

    def report(thread: int) -> None:
        barrier.wait()
        for i in range(25):
            fast.report_runless_asset_event(dg.AssetMaterialization("shared", partition=f"{thread}-{i}"))

    threads = [threading.Thread(target=report, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stock = local_instance(settings)
    partitions = {r.partition_key for r in stock.fetch_materializations(dg.AssetKey("shared"), limit=1000).records}
    assert partitions == {f"{t}-{i}" for t in range(4) for i in range(25)}


def test_a_killed_writer_loses_no_committed_event(settings: Settings, tmp_path: Path) -> None:
    """A process killed with its connections open (the WAL not yet folded into the database files): every event it
    committed is read back by the next process."""
    script = tmp_path / "writer.py"
    script.write_text(
        "import os, dagster as dg\n"
        "from dagster_project.instance import local_instance\n"
        "instance = local_instance(fast_event_log=True)\n"
        "for i in range(40):\n"
        "    instance.report_runless_asset_event(dg.AssetMaterialization('killed', partition=str(i)))\n"
        "print('written', flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert done.stdout.strip() == "written"
    stock = local_instance(settings)
    records = stock.fetch_materializations(dg.AssetKey("killed"), limit=1000).records
    assert sorted(int(r.partition_key) for r in records) == list(range(40))


def test_after_a_wipe_a_runs_new_events_land_in_its_new_file(settings: Settings) -> None:
    """Dagster's wipe deletes the runs' files: an event logged for a run afterwards is in its new file."""
    fast = local_instance(settings, fast_event_log=True)
    run = fast.get_run_by_id(_run(fast).run_id)
    assert run is not None
    fast.event_log_storage.wipe()
    fast.report_engine_event("after the wipe", run)
    stock = local_instance(settings)
    records = stock.get_records_for_run(run.run_id).records
    messages = [r.event_log_entry.dagster_event.message for r in records if r.event_log_entry.dagster_event]
    assert messages == ["after the wipe"]
