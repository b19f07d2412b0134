"""The headless Chromium the browser tests drive: $CHROMIUM, or the first one on PATH
(`make browser` installs Debian's when there is none)."""

from __future__ import annotations

import os
import shutil

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")


def chromium() -> str:
    found = os.environ.get("CHROMIUM") or next((b for b in map(shutil.which, BROWSERS) if b), None)
    if not found:
        pytest.fail("no headless Chromium: run `make browser` (deploy/scripts/chromium.sh)", pytrace=False)
    return found
