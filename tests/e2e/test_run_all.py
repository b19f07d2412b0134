"""`rebound run-all` (`make run`): every service, and the console's web app, in the foreground
with its lines behind its name; a process that dies is reported and started again; Ctrl-C stops everything."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rebound.settings import Settings
from tests.local import answers, free_port

pytestmark = pytest.mark.e2e

SERVICES = ("intake", "grading", "relisting", "ledger", "connectors", "console")


class Output:
    """The supervisor's output, read as it comes."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, pattern: str, seconds: float = 60.0, after: int = 0) -> re.Match:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} in {seconds:.0f} s:\n" + "\n".join(self.lines[-40:]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_run_all_runs_every_service_restarts_one_that_dies_and_stops_on_ctrl_c(settings: Settings) -> None:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
    }
    port = free_port()
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "rebound", "run-all", "--console-port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    output = Output(supervisor)
    try:
        pids = {s: int(output.wait_for(rf"^run-all\s+\| {s}-0 started \(pid (\d+)\)").group(1)) for s in SERVICES}
        for service in SERVICES:  # each one's own lines, behind its name, in the console format
            output.wait_for(rf"^{service}-0\s+\| .*service_started", seconds=90)
        web = int(output.wait_for(r"^run-all\s+\| console-web-0 started \(pid (\d+)\)").group(1))
        assert answers(f"http://127.0.0.1:{port}/health"), "the console's web app serves"
        mark = len(output.lines)
        os.kill(pids["grading"], signal.SIGKILL)
        exited = r"^run-all\s+\| grading-0 exited with code -9 after [\d.]+ s; starting it again in 1 s"
        output.wait_for(exited, after=mark)
        again = int(output.wait_for(r"^run-all\s+\| grading-0 started \(pid (\d+)\)", after=mark).group(1))
        assert again != pids["grading"]
        output.wait_for(r"^grading-0\s+\| .*service_started", seconds=90, after=mark)
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(60) == 0
        output.wait_for(r"^run-all\s+\| stopped$", seconds=5)
        assert not [pid for pid in [again, web, *pids.values()] if _alive(pid)], "a process outlived run-all"
        stopped = [line for line in output.lines if "service_stopped" in line]
        assert len(stopped) == len(SERVICES), "every service stops gracefully, on SIGTERM"
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
