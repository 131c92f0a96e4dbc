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

# The write points, in the order a night reaches them.
RAW = "raw"  # a raw table's day (after its quarantine: the raw file commits the pair)
QUARANTINE = "quarantine"  # a raw table's quarantined rows, before the raw file that commits them
SCORES = "scores"  # the day's scores in the Delta table, before they are read back and checked
WRITE_POINTS = (QUARANTINE, RAW, SCORES)


def write_point(name: str) -> None:
    """Kill this process here if the fault-injection variable names this point."""
    if os.environ.get(KILL_AT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
