"""CPU time of the machine and of each process of the local system, over a window: the machine's
busy share from /proc/stat, and each process's user + system time from /proc/PID/stat (Kafka's
JVM, every PostgreSQL process of the local cluster, every service of the fleet)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from rebound.simulation.fleet import Fleet

TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
REPO = Path(__file__).resolve().parents[1]


def _machine() -> tuple[int, int]:
    """(busy, total) jiffies of every core since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total


def _cpu_s(pid: int) -> float | None:
    """User + system seconds of a process and of its children it has waited for, or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def local_processes(fleet: Fleet | None) -> dict[str, list[int]]:
    """The processes of the local system by name: kafka, postgres (the postmaster and its
    backends), and each fleet member."""
    state = Path(os.environ.get("REBOUND_STATE") or REPO / ".state")
    found: dict[str, list[int]] = {}
    kafka = state / "kafka" / "kafka.pid"
    if kafka.is_file():
        found["kafka"] = [int(kafka.read_text().strip())]
    postmaster = state / "pg" / "data" / "postmaster.pid"
    if postmaster.is_file():
        pid = int(postmaster.read_text().split("\n", 1)[0])
        found["postgres"] = [pid, *_children(pid)]
    for member in fleet.members if fleet else []:
        if member.process is not None:
            found[member.service] = [*found.get(member.service, []), member.process.pid]
    return found


@dataclass
class CpuWindow:
    """CPU used between `begin` and `end`, by the machine and by each local process. A PostgreSQL
    backend that starts inside the window counts from zero; one that ends in it is lost (its time
    goes to the postmaster only once it is waited for)."""

    fleet: Fleet | None = None
    others: dict[str, int] = field(default_factory=dict)
    """Further processes to count, by name: e.g. the bare loop's hops."""
    _machine: tuple[int, int] = (0, 0)
    _started: float = 0.0
    _cpu: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0
    busy: float = 0.0  # share of the whole machine (every core), 0..1, whoever used it
    by_process: dict[str, float] = field(default_factory=dict)  # CPU seconds

    def _processes(self) -> dict[str, list[int]]:
        return {**local_processes(self.fleet), **{name: [pid] for name, pid in self.others.items()}}

    def begin(self) -> None:
        self._machine = _machine()
        self._started = time.monotonic()
        self._cpu = {
            pid: cpu for pids in self._processes().values() for pid in pids if (cpu := _cpu_s(pid)) is not None
        }

    def end(self) -> None:
        busy, total = _machine()
        self.seconds = time.monotonic() - self._started
        self.busy = (busy - self._machine[0]) / max(1, total - self._machine[1])
        self.by_process = {}
        for name, pids in self._processes().items():
            spent = 0.0
            for pid in pids:
                if (cpu := _cpu_s(pid)) is not None:
                    spent += cpu - self._cpu.get(pid, 0.0)
            self.by_process[name] = round(spent, 2)

    def as_dict(self, units: int) -> dict:
        spent = sum(self.by_process.values())
        return {
            "seconds": round(self.seconds, 1),
            "machine_busy": round(self.busy, 3),
            "processes_busy": round(spent / max(1e-9, self.seconds * CORES), 3),
            "cpu_s": self.by_process,
            "cpu_ms_per_unit": round(spent * 1000 / max(1, units), 2),
        }
