"""What a test can demand of a wave's output, read from the topics alone (never the services)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from rebound import checker, simulator
from rebound.demo import INBOUND
from rebound_contracts.topics import DISPOSITIONS, DLQ, EXCEPTIONS, STOCK_ADJUSTMENTS, UNIT_GRADED


def _ours(before: dict, source) -> bool:  # noqa: ANN001
    return source.topic in {t.name for t in INBOUND} and source.offset >= before.get((source.topic, source.partition), 0)


async def guarantees(bootstrap: str, wave: simulator.Wave) -> checker.Report:
    sellers = set(wave.sellers)
    adjustments = (await checker.read_records(bootstrap, STOCK_ADJUSTMENTS.name, sellers=sellers)).records
    graded = await checker.read_topic(bootstrap, UNIT_GRADED.name, sellers=sellers)
    decided = await checker.read_topic(bootstrap, DISPOSITIONS.name, sellers=sellers)
    return checker.check(adjustments, graded, wave.expected_stock, dispositions=decided)


async def assert_bad_input_accounted_for(bootstrap: str, wave: simulator.Wave, before: dict) -> None:
    """Every malformed or wrong message of the wave has exactly its outcome, once."""
    letters = [d for _, _, d in await checker.read_topic(bootstrap, DLQ.name, sellers=None) if _ours(before, d.source)]
    exceptions = [e for _, _, e in await checker.read_topic(bootstrap, EXCEPTIONS.name, sellers=None)
                  if _ours(before, e.source)]
    sent = wave.bad_by_kind
    unreadable = sum(n for kind, n in sent.items() if kind in simulator.SCHEMA_INVALID_KINDS)
    dead = Counter(d.kind for d in letters)
    assert dead["invalid_json"] + dead["schema_violation"] == unreadable, dead
    assert dead["oversized"] == sent.get("oversized", 0), dead
    assert dead["conflicting_duplicate"] == sent.get("conflicting_duplicate", 0), dead
    assert dead["processing_failed"] == 0, dead
    raised = Counter(e.kind for e in exceptions)
    assert raised["unknown_seller"] == sent.get("unknown_seller", 0), raised
    assert raised["unexpected_unit"] == wave.unexpected_units, raised
    assert raised["cross_tenant_reference"] == sent.get("cross_tenant", 0), raised


def assert_no_secret_in_logs(log_dir: Path, database_url: str) -> int:
    """The database password appears in no log line of the run. Returns the lines searched."""
    password = urlsplit(database_url).password
    assert password, "the database URL has no password to look for"
    lines = 0
    for path in log_dir.rglob("*.log"):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines += text.count("\n")
        assert password not in text, f"the database password appears in {path}"
    assert lines > 0, f"no logs under {log_dir}"
    return lines
