"""Kafka over SASL/SCRAM and TLS, and PostgreSQL with its password from a file, against the real
servers. The local broker (`deploy/scripts/kafka.sh`) has a SASL_PLAINTEXT listener on
KAFKA_SASL_PORT (19094) and a SASL_SSL one on KAFKA_SSL_PORT (19095) for the SCRAM-SHA-512 user
`rebound`, whose password is in .state/kafka/sasl-password and whose CA is .state/kafka/tls/ca.pem.

Against another broker, name its listeners and secrets with REBOUND_TEST_KAFKA_SASL_BOOTSTRAP,
REBOUND_TEST_KAFKA_SSL_BOOTSTRAP, REBOUND_TEST_KAFKA_SASL_USERNAME,
REBOUND_TEST_KAFKA_SASL_PASSWORD_FILE and REBOUND_TEST_KAFKA_SSL_CAFILE, or set
REBOUND_TEST_NO_SASL_LISTENER=1 to skip these tests on purpose. A missing listener fails them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from rebound.connections import KafkaRefused, database_connect_kwargs, kafka_options
from rebound.db import create_pool
from rebound.messaging.outbox import OutboxBuffer
from rebound.messaging.relay import OutboxRelay
from rebound.messaging.topic_admin import ensure_topics
from rebound.settings import Settings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KAFKA_STATE = Path(os.environ.get("REBOUND_STATE", REPO / ".state")) / "kafka"
SASL_BOOTSTRAP = os.environ.get(
    "REBOUND_TEST_KAFKA_SASL_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_SASL_PORT', '19094')}"
)
SSL_BOOTSTRAP = os.environ.get(
    "REBOUND_TEST_KAFKA_SSL_BOOTSTRAP", f"127.0.0.1:{os.environ.get('KAFKA_SSL_PORT', '19095')}"
)
USERNAME = os.environ.get("REBOUND_TEST_KAFKA_SASL_USERNAME", "rebound")
PASSWORD_FILE = Path(os.environ.get("REBOUND_TEST_KAFKA_SASL_PASSWORD_FILE", KAFKA_STATE / "sasl-password"))
CA_FILE = Path(os.environ.get("REBOUND_TEST_KAFKA_SSL_CAFILE", KAFKA_STATE / "tls" / "ca.pem"))


async def _listener_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 5)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def _require_listener(bootstrap: str, *files: Path) -> None:
    if os.environ.get("REBOUND_TEST_NO_SASL_LISTENER") == "1":
        pytest.skip("REBOUND_TEST_NO_SASL_LISTENER=1: no SASL listener to test against")
    missing = [str(f) for f in files if not f.is_file()]
    if missing or not await _listener_answers(bootstrap):
        pytest.fail(
            f"no SASL listener at {bootstrap} (or missing {missing}): restart the local broker with "
            "`deploy/scripts/kafka.sh down && deploy/scripts/kafka.sh up`, name another one with "
            "REBOUND_TEST_KAFKA_SASL_BOOTSTRAP, or set REBOUND_TEST_NO_SASL_LISTENER=1",
            pytrace=False,
        )


def _secure_settings(settings: Settings, bootstrap: str, protocol: str, password_file: Path, **extra: str) -> Settings:
    return Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "DATABASE_URL": settings.database_url,
            "KAFKA_SECURITY_PROTOCOL": protocol,
            "KAFKA_SASL_USERNAME": USERNAME,
            "KAFKA_SASL_PASSWORD_FILE": str(password_file),
            **extra,
        }
    )


@pytest.fixture
async def sasl(settings: Settings, tmp_path: Path) -> Settings:
    await _require_listener(SASL_BOOTSTRAP, PASSWORD_FILE)
    secret = tmp_path / "password"  # as a mounted Secret would be: one file, a final newline
    secret.write_text(PASSWORD_FILE.read_text().strip() + "\n")
    return _secure_settings(settings, SASL_BOOTSTRAP, "SASL_PLAINTEXT", secret)


@pytest.fixture
def capture_everything(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # aiokafka's own debug logs included
    return caplog


async def _read_committed(settings: Settings, topic: str, partitions: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        isolation_level="read_committed",
        group_id=None,
        enable_auto_commit=False,
        **kafka_options(settings),
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [r.value for r in records]
        return out
    finally:
        await consumer.stop()


async def test_the_outbox_relay_publishes_over_scram_and_never_logs_the_password(
    sasl: Settings,
    pool: asyncpg.Pool,
    capture_everything: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    assert await ensure_topics(sasl.kafka_bootstrap_servers, wait_seconds=10, kafka_options=kafka_options(sasl)) == []
    topic, producer = f"it.sasl.{uuid.uuid4().hex[:12]}", f"it-sasl-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=sasl.kafka_bootstrap_servers, **kafka_options(sasl))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
        buffer = OutboxBuffer(producer)
        payloads = [f'{{"n": {i}}}'.encode() for i in range(40)]
        for i, payload in enumerate(payloads):
            buffer.add_raw(topic, f"key-{i % 3}", payload)
        async with pool.acquire() as conn, conn.transaction():
            await buffer.flush(conn)
        relay = OutboxRelay(
            sasl.database_url,
            sasl.kafka_bootstrap_servers,
            producer,
            batch_size=15,
            kafka_options=kafka_options(sasl),
            database_kwargs=database_connect_kwargs(sasl),
        )
        task = asyncio.create_task(relay.run())
        try:
            for _ in range(300):
                if not await pool.fetchval("SELECT count(*) FROM rebound.outbox WHERE producer = $1", producer):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the relay did not drain the outbox over SASL in 30 s")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert sorted(await _read_committed(sasl, topic, 2)) == sorted(payloads)
    finally:
        await admin.delete_topics([topic])
        await admin.close()
    password = sasl.kafka_sasl_password
    assert password and password not in repr(sasl)
    captured = capsys.readouterr()
    assert "relay_elected" in captured.out + captured.err + capture_everything.text, "no logs captured at all?"
    for text in (capture_everything.text, captured.out, captured.err):
        assert password not in text


async def test_a_wrong_password_is_refused_at_once_not_waited_for(
    sasl: Settings,
    tmp_path: Path,
    capture_everything: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture,
) -> None:
    wrong_password = f"wrong-{uuid.uuid4().hex}"
    (tmp_path / "wrong").write_text(wrong_password)
    wrong = _secure_settings(sasl, SASL_BOOTSTRAP, "SASL_PLAINTEXT", tmp_path / "wrong")
    with pytest.raises(KafkaRefused) as refused:
        # Forever: only a refusal (not an unreachable broker) ends the wait.
        await asyncio.wait_for(
            ensure_topics(SASL_BOOTSTRAP, wait_seconds=float("inf"), kafka_options=kafka_options(wrong)), 30
        )
    message = str(refused.value)
    assert f"refused SASL_PLAINTEXT as '{USERNAME}' (SCRAM-SHA-512)" in message
    assert "Authentication failed" in message
    captured = capsys.readouterr()
    for text in (message, capture_everything.text, captured.out, captured.err):
        assert wrong_password not in text


async def test_sasl_ssl_with_the_brokers_ca_and_refused_with_another(
    settings: Settings,
    tmp_path: Path,
    capture_everything: pytest.LogCaptureFixture,
) -> None:
    await _require_listener(SSL_BOOTSTRAP, PASSWORD_FILE, CA_FILE)
    secure = _secure_settings(settings, SSL_BOOTSTRAP, "SASL_SSL", PASSWORD_FILE, KAFKA_SSL_CAFILE=str(CA_FILE))
    assert await ensure_topics(SSL_BOOTSTRAP, wait_seconds=10, kafka_options=kafka_options(secure)) == []
    assert shutil.which("openssl"), "openssl is needed to make a CA the broker's certificate is not signed by"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=other CA",
            "-keyout",
            "other.key",
            "-out",
            "other.pem",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    untrusting = _secure_settings(
        settings, SSL_BOOTSTRAP, "SASL_SSL", PASSWORD_FILE, KAFKA_SSL_CAFILE=str(tmp_path / "other.pem")
    )
    with pytest.raises(KafkaRefused, match="certificate verify failed"):
        await asyncio.wait_for(
            ensure_topics(SSL_BOOTSTRAP, wait_seconds=float("inf"), kafka_options=kafka_options(untrusting)), 30
        )
    assert secure.kafka_sasl_password is not None
    assert secure.kafka_sasl_password not in capture_everything.text


async def test_the_database_password_file_replaces_the_urls(settings: Settings, tmp_path: Path) -> None:
    url = urlsplit(settings.database_url)
    if not url.password:
        pytest.fail("DATABASE_URL has no password to move into a file", pytrace=False)
    (tmp_path / "db-password").write_text(url.password + "\n")
    netloc = f"{url.username}:not-the-password@{url.hostname}:{url.port}"
    secure = Settings.from_env(
        {
            "DATABASE_URL": urlunsplit(url._replace(netloc=netloc)),
            "DATABASE_PASSWORD_FILE": str(tmp_path / "db-password"),
        }
    )
    pool = await create_pool(
        secure.database_url, max_size=1, wait_seconds=5, connect_kwargs=database_connect_kwargs(secure)
    )
    try:
        assert await pool.fetchval("SELECT current_user") == url.username
    finally:
        await pool.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(secure.database_url)


async def test_the_command_line_tools_connect_with_the_same_settings(settings: Settings, tmp_path: Path) -> None:
    await _require_listener(SASL_BOOTSTRAP, PASSWORD_FILE)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": SASL_BOOTSTRAP,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": USERNAME,
        "KAFKA_SASL_PASSWORD_FILE": str(PASSWORD_FILE),
        "DATABASE_URL": settings.database_url,
    }
    rebound = [sys.executable, "-m", "rebound"]
    done = subprocess.run([*rebound, "topics"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "topics created" in done.stdout, done.stderr
    sent = subprocess.run(
        [*rebound, "simulate", "--units", "5", "--seed", str(uuid.uuid4().int % 10**9)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sent.returncode == 0, sent.stderr
    assert PASSWORD_FILE.read_text().strip() not in done.stdout + done.stderr + sent.stdout + sent.stderr
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    refused = subprocess.run(
        [*rebound, "topics"],
        env={**env, "KAFKA_SASL_PASSWORD_FILE": str(wrong)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "refused" in refused.stderr.lower(), refused.stderr
