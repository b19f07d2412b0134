"""`python -m rebound`: the command line."""

import signal
import sys

# A stop that comes while the process is still loading finds nothing in flight: leave cleanly.
# (`rebound run` and then FastStream install their own handlers once they start.)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

from .cli import app  # noqa: E402 - after the handler, so no SIGTERM finds the process without one

app(prog_name="rebound")
