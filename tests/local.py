"""Loopback helpers for tests that start a server of their own."""

from __future__ import annotations

import socket
import time
from urllib.request import urlopen


def free_port() -> int:
    """A TCP port nothing listens on at 127.0.0.1, right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str, seconds: float = 60.0, alive: object = None) -> bool:
    """Whether `url` answers 200 within `seconds`; `alive`, a callable, ends the wait early when it
    returns False (the server's process died)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            if callable(alive) and not alive():
                return False
            time.sleep(0.2)
    return False
