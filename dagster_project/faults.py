"""Named write points, where the fault-injection tests kill the process.

Each durable write of a night calls ``write_point(<name>)`` right after it. In production this does nothing. The
fault-injection tests set ``PLATFORM_FAULT_KILL_AT=<name>`` in a run's process, and the process kills itself there
with SIGKILL, as the out-of-memory killer or ``kill -9`` would: no ``finally``, no handler, no flush. The rerun must
then leave the tables as an uninterrupted run would (tests/test_fault_injection.py).

The variable is read when the point is reached, never at import; it is a test hook, not a setting.
"""

import os
import signal

KILL_AT_VARIABLE = "PLATFORM_FAULT_KILL_AT"

# The write points, in the order a night (then a retrain) reaches them.
QUARANTINE = "quarantine"  # a raw table's quarantined rows, before the raw file that commits them
RAW = "raw"  # a raw table's day (after its quarantine: the raw file commits the pair)
DBT = "dbt"  # dbt's build of the run's days in the warehouse
EXPORT = "export"  # a dbt model's day exported to the lake
SNAPSHOT = "snapshot"  # a day of the Delta offline store
SCORES = "scores"  # the day's scores in the Delta table, before they are read back and checked
DRIFT_REPORT = "drift_report"  # the day's Evidently report
PERFORMANCE = "performance"  # the realized performance of the day's matured scores
TRAINING_SET = "training_set"  # a new version of the Delta training set
ALIAS = "alias"  # a registry alias moved (the gate's promotion, a rollback), the registry lock still held
# A batch of the online store's next snapshot, written but not yet published (before the commit or pointer swap).
ONLINE_STORE = "online_store"
WRITE_POINTS = (
    QUARANTINE,
    RAW,
    DBT,
    EXPORT,
    SNAPSHOT,
    SCORES,
    DRIFT_REPORT,
    PERFORMANCE,
    TRAINING_SET,
    ALIAS,
    ONLINE_STORE,
)


def write_point(name: str) -> None:
    """Kill this process here if the fault-injection variable names this point."""
    if os.environ.get(KILL_AT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
