"""What a test can demand of a wave's output, read from the topics alone (never the services)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from rebound import simulation
from rebound.simulation import checker, reading
from rebound.simulation.demo import INBOUND
from rebound.settings import URL_SECRETS, Settings
from rebound_contracts.topics import DLQ, EXCEPTIONS


def _ours(before: dict, source) -> bool:
    inbound = {t.name for t in INBOUND}
    return source.topic in inbound and source.offset >= before.get((source.topic, source.partition), 0)


async def guarantees(bootstrap: str, wave: simulation.Wave) -> checker.Report:
    """The checker's verdict on the wave's output, as `rebound check` gives it: grades of other
    sellers are read too when an adjustment names their LPN (so a cross-tenant move is seen), and
    every outbound record that does not parse counts as a fault (`unreadable`)."""
    return await checker.check_topics(bootstrap, wave.sellers, wave.expected_stock)


async def assert_bad_input_accounted_for(bootstrap: str, wave: simulation.Wave, before: dict) -> None:
    """Every malformed or wrong message of the wave has exactly its outcome, once; the hostile but
    valid ones (`simulation.HOSTILE_KINDS`) none but being applied, which the final stock shows."""
    dlq = await reading.read_records(bootstrap, DLQ, sellers=None)
    raised_read = await reading.read_records(bootstrap, EXCEPTIONS, sellers=None)
    # What the services wrote must parse against the contract, every record of it.
    assert not dlq.unreadable, f"{DLQ.name}: unreadable records {dlq.unreadable[:5]}"
    assert not raised_read.unreadable, f"{EXCEPTIONS.name}: unreadable records {raised_read.unreadable[:5]}"
    letters = [r.model for r in dlq.records if _ours(before, r.model.source)]
    exceptions = [r.model for r in raised_read.records if _ours(before, r.model.source)]
    sent = wave.bad_by_kind
    unreadable = sum(n for kind, n in sent.items() if kind in simulation.SCHEMA_INVALID_KINDS)
    dead = Counter(d.kind for d in letters)
    assert dead["invalid_json"] + dead["schema_violation"] == unreadable, dead
    assert dead["oversized"] == sent.get("oversized", 0), dead
    assert dead["conflicting_duplicate"] == sent.get("conflicting_duplicate", 0), dead
    assert dead["processing_failed"] == 0, dead
    assert sum(dead.values()) == sum(
        sent.get(k, 0) for k in (*simulation.SCHEMA_INVALID_KINDS, "oversized", "conflicting_duplicate")
    ), dead
    raised = Counter(e.kind for e in exceptions)
    assert raised["unknown_seller"] == sent.get("unknown_seller", 0), raised
    assert raised["unexpected_unit"] == wave.unexpected_units, raised
    assert raised["cross_tenant_reference"] == sent.get("cross_tenant", 0), raised
    assert set(raised) <= {"unknown_seller", "unexpected_unit", "cross_tenant_reference"}, raised


def configured_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """Every secret the services get from `env`, by where it comes from: the password in
    DATABASE_URL, the content of DATABASE_PASSWORD_FILE, KAFKA_SASL_PASSWORD or the content of
    KAFKA_SASL_PASSWORD_FILE (read as the services read them)."""
    settings = Settings.from_env(env)
    query = dict(part.partition("=")[::2] for part in urlsplit(settings.database_url).query.split("&") if part)
    secrets = {
        "the password in DATABASE_URL": urlsplit(settings.database_url).password,
        **{
            f"the {name} parameter of DATABASE_URL": value
            for name, value in query.items()
            if name.lower() in URL_SECRETS
        },
        "DATABASE_PASSWORD_FILE": settings.database_password,
        "KAFKA_SASL_PASSWORD_FILE"
        if env.get("KAFKA_SASL_PASSWORD_FILE")
        else "KAFKA_SASL_PASSWORD": settings.kafka_sasl_password,
    }
    return {name: value for name, value in secrets.items() if value}


def assert_no_secret_in_logs(log_dir: Path, env: Mapping[str, str]) -> int:
    """No secret configured in `env` (see `configured_secrets`) appears in any log of the run.
    Returns the lines searched."""
    secrets = configured_secrets(env)
    assert secrets, "no secret is configured, so there is nothing to look for"
    lines = 0
    for path in log_dir.rglob("*.log"):
        text = path.read_text(encoding="utf-8", errors="replace")
        lines += text.count("\n")
        for name, secret in secrets.items():
            assert secret not in text, f"the secret of {name} appears in {path}"
    assert lines > 0, f"no logs under {log_dir}"
    return lines
