"""Network partitions on one machine: processes cut off from a server's port without any socket
being closed, as a partition or a dead switch would do it.

Each process is started in a cgroup (v2) of its own; a cut makes nftables drop every TCP packet
the sockets of that cgroup send to the cut ports and every packet those ports send to them.
Nothing answers: no reset, no refusal, no acknowledgement; both kernels retransmit and probe, and
each side notices only through its own timeouts and keepalives. Healing removes the rules and
the packets flow again on the same connections. A userspace proxy cannot do this: its own kernel
would acknowledge the server's keepalive probes for the cut client. A socket belongs to the
cgroup its process was in when it was created, so a process is put in its cgroup before it
starts (`launcher`), not moved there later."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

NFT_CGROUP_ROOT = Path("/sys/fs/cgroup")  # where nft looks a cgroup path up (cgroup v2 may be under unified/)


def _cgroup2_root() -> Path:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    pytest.fail("network partitions need a cgroup v2 hierarchy mounted (none in /proc/self/mounts)", pytrace=False)


def _nft(*commands: str) -> str:
    done = subprocess.run(["nft", "-f", "-"], input="\n".join(commands), capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"nft failed: {done.stderr.strip()}\n" + "\n".join(commands))
    return done.stdout


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _remove_cgroup(root: Path, base: Path) -> None:
    """Move what still runs in `base` and its children to `root`, then remove them."""
    groups = [*(p for p in base.iterdir() if p.is_dir()), base] if base.is_dir() else []
    for group in groups:
        with contextlib.suppress(OSError):
            for pid in (group / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    (root / "cgroup.procs").write_text(pid)
    for group in groups:
        with contextlib.suppress(OSError):
            group.rmdir()


def _sweep_stale(root: Path) -> None:
    """Remove the tables and cgroups a test process left when it died before closing its network:
    their names end with that process's pid."""
    for table in re.findall(r"^table inet (rebound_\w+_(\d+))$", _nft("list tables"), re.MULTILINE):
        if not _alive(int(table[1])):
            _nft(f"delete table inet {table[0]}")
    for base in root.glob("rebound-*-*"):
        pid = base.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_cgroup(root, base)


class Network:
    """Named processes (each in its cgroup) that can be cut off from TCP ports on this machine."""

    def __init__(self, name: str) -> None:
        if shutil.which("nft") is None:
            pytest.fail("network partitions need nft: deploy/scripts/netfault.sh installs nftables", pytrace=False)
        if os.geteuid() != 0:
            pytest.fail("network partitions need root (nftables rules, cgroups)", pytrace=False)
        root = _cgroup2_root()
        _sweep_stale(root)
        self.root = root
        self.base = root / f"rebound-{name}-{os.getpid()}"
        if not self.base.is_relative_to(NFT_CGROUP_ROOT):
            pytest.fail(f"nft finds cgroups under {NFT_CGROUP_ROOT}, cgroup v2 is at {root}", pytrace=False)
        self.table = f"rebound_{name}_{os.getpid()}".replace("-", "_")
        self.cut: dict[str, tuple[int, ...]] = {}  # process name -> the ports it is cut off from
        self.base.mkdir(exist_ok=True)

    def launcher(self, name: str) -> list[str]:
        """A command prefix that starts its command in `name`'s cgroup."""
        group = self.base / name
        group.mkdir(exist_ok=True)
        return ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(group)]

    def _apply(self) -> None:
        commands = [f"add table inet {self.table}", f"delete table inet {self.table}"]
        if self.cut:
            commands += [
                f"add table inet {self.table}",
                f"add chain inet {self.table} out {{ type filter hook output priority 0; }}",
                f"add chain inet {self.table} in {{ type filter hook input priority 0; }}",
            ]
        for name, ports in self.cut.items():
            # nft names a cgroup by its path under NFT_CGROUP_ROOT and matches it at its depth in
            # the v2 hierarchy: the base is at 1, a process's cgroup at 2.
            match = f'socket cgroupv2 level 2 "{(self.base / name).relative_to(NFT_CGROUP_ROOT)}"'
            listed = ", ".join(map(str, ports))
            commands += [
                f"add rule inet {self.table} out {match} tcp dport {{ {listed} }} counter drop",
                f"add rule inet {self.table} in {match} tcp sport {{ {listed} }} counter drop",
            ]
        _nft(*commands)

    def dropped(self, name: str) -> int:
        """Packets dropped so far between `name`'s sockets and the ports it is cut off from (0 when
        it is not cut off): proof that a cut took effect."""
        if name not in self.cut:
            return 0
        path = str((self.base / name).relative_to(NFT_CGROUP_ROOT))
        listing = _nft(f"list table inet {self.table}")
        return sum(
            int(packets)
            for line in listing.splitlines()
            if f'"{path}"' in line
            for packets in re.findall(r"counter packets (\d+)", line)
        )

    def cut_off(self, name: str, ports: tuple[int, ...]) -> None:
        """Drop, from now on, every packet between `name`'s sockets and `ports`."""
        if not (self.base / name).is_dir():
            raise ValueError(f"{name} was not started with this network's launcher")
        self.cut[name] = ports
        self._apply()

    def heal(self, name: str | None = None) -> None:
        """Let `name`'s packets (everyone's, by default) through again."""
        if name is None:
            self.cut.clear()
        else:
            self.cut.pop(name, None)
        self._apply()

    def close(self) -> None:
        """Heal everything and remove the cgroups, moving what still runs in them to the root."""
        try:
            self.heal()
        finally:
            _remove_cgroup(self.root, self.base)


ESTABLISHED = "01"  # the state column of /proc/net/tcp


def local_port_owner(port: int, remote_port: int, pids: list[int]) -> int | None:
    """Which of `pids` holds the established TCP connection from local `port` to `remote_port`
    (IPv4 or IPv6), if any: a local port is unique only with its peer."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = (int(address.rsplit(":", 1)[1], 16) for address in fields[1:3])
            if (local, remote, fields[3]) == (port, remote_port, ESTABLISHED):
                inodes.add(f"socket:[{fields[9]}]")
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return pid
    return None
