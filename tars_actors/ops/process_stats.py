"""CPU time and memory of running processes, read from /proc (Linux), for the benchmarks;
figures over several processes (the workers of one TARS) are their sums."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "rss_mb"]


def cpu_seconds(*pids: int) -> float:
    """User and system CPU seconds the processes have used so far, together."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mb(*pids: int) -> float:
    """The processes' resident memory now, together, in MiB."""
    total = 0.0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
                break
    return total
