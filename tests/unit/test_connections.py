"""TLS and SASL settings: parsing, validation, secrets kept out of reprs and errors, and the
client arguments built from them."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from rebound.connections import database_connect_kwargs, kafka_options, kafka_security, stop_consumer
from rebound.settings import Settings, SettingsError

SECRET = "s3cr3t-Pa55-do-not-log"
SASL = {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_USERNAME": "rebound"}


def _secret_file(tmp_path: Path, text: str = SECRET + "\n") -> str:
    path = tmp_path / "password"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A throwaway CA and a client certificate signed by it."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    )
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key", "-out", "client.csr"
    )
    openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        "client.pem",
    )
    return {name: str(folder / f"{name}") for name in ("ca.pem", "client.pem", "client.key", "ca.key")}


def test_defaults_are_plaintext_and_build_no_options() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_sasl_mechanism is None
    assert kafka_options(settings) == {}
    assert kafka_security(settings) is None
    assert database_connect_kwargs(settings) == {}


def test_sasl_defaults_to_scram_sha_512() -> None:
    settings = Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD": SECRET})
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    assert kafka_options(settings) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "rebound",
        "sasl_plain_password": SECRET,
    }
    security = kafka_security(settings)
    assert isinstance(security, SASLScram512)
    assert (security.username, security.password, security.use_ssl) == ("rebound", SECRET, False)


@pytest.mark.parametrize(
    ("mechanism", "kind"), [("scram-sha-256", SASLScram256), ("PLAIN", SASLPlaintext), ("SCRAM-SHA-512", SASLScram512)]
)
def test_each_mechanism_maps_to_faststream(mechanism: str, kind: type) -> None:
    settings = Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD": SECRET, "KAFKA_SASL_MECHANISM": mechanism})
    assert kafka_options(settings)["sasl_mechanism"] == mechanism.upper()
    assert type(kafka_security(settings)) is kind


def test_password_file_is_read_once_without_its_final_newline(tmp_path: Path) -> None:
    settings = Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD_FILE": _secret_file(tmp_path)})
    assert settings.kafka_sasl_password == SECRET


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set"):
        Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD": SECRET, "KAFKA_SASL_PASSWORD_FILE": _secret_file(tmp_path)})


def test_unreadable_or_empty_password_file_is_one_line(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent")
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD_FILE": missing})
    assert str(raised.value) == (
        f"KAFKA_SASL_PASSWORD_FILE={missing} cannot be read (FileNotFoundError: No such file or directory)"
    )
    with pytest.raises(SettingsError, match="is empty"):
        Settings.from_env({**SASL, "KAFKA_SASL_PASSWORD_FILE": _secret_file(tmp_path, "\n")})


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is not one of"),
        ({**SASL, "KAFKA_SASL_PASSWORD": SECRET, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "KAFKA_SASL_MECHANISM='GSSAPI'"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": SECRET}, "KAFKA_SASL_USERNAME is required"),
        (SASL, "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required"),
        ({"KAFKA_SASL_USERNAME": "rebound"}, "KAFKA_SASL_USERNAME is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        ({"KAFKA_SASL_PASSWORD": SECRET}, "KAFKA_SASL_PASSWORD is set but"),
        ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "KAFKA_SSL_CAFILE is set but KAFKA_SECURITY_PROTOCOL=PLAINTEXT"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
            "KAFKA_SSL_CAFILE=/nonexistent/ca.pem is not a readable file",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "/etc/hostname"},
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together",
        ),
        ({"DATABASE_PASSWORD_FILE": "/nonexistent/pw"}, "DATABASE_PASSWORD_FILE=/nonexistent/pw cannot be read"),
    ],
)
def test_bad_combinations_are_one_line_naming_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(env)
    message = str(raised.value)
    assert names in message
    assert "\n" not in message
    assert SECRET not in message


def test_a_settings_error_stops_the_process_with_its_line() -> None:
    # A SystemExit: the entry point prints the line to stderr and exits 1, without a traceback.
    assert issubclass(SettingsError, SystemExit)
    result = subprocess.run(
        [str(Path(__file__).resolve().parents[2] / ".venv" / "bin" / "rebound"), "topics"],
        env={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "rebound", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required with KAFKA_SECURITY_PROTOCOL=SASL_SSL"
    )


def test_secrets_stay_out_of_repr(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            **SASL,
            "KAFKA_SASL_PASSWORD": SECRET,
            "DATABASE_PASSWORD_FILE": _secret_file(tmp_path),
            "DATABASE_URL": f"postgresql://rebound:{SECRET}@db.example:5432/rebound",
        }
    )
    assert settings.database_password == SECRET
    for text in (repr(settings), str(settings), settings.redacted_database_url()):
        assert SECRET not in text
    assert "kafka_sasl_username='rebound'" in repr(settings)
    assert SECRET not in repr(kafka_security(settings))


def test_every_password_a_database_url_can_carry_is_redacted() -> None:
    url = (
        f"postgresql://rebound:{SECRET}@db.example:5432/rebound?sslmode=verify-full&password={SECRET}2"
        f"&SSLPassword={SECRET}3&sslrootcert=/etc/ca.pem"
    )
    redacted = Settings.from_env({"DATABASE_URL": url}).redacted_database_url()
    assert SECRET not in redacted
    assert redacted == (
        "postgresql://rebound:***@db.example:5432/rebound?sslmode=verify-full&password=***"
        "&SSLPassword=***&sslrootcert=/etc/ca.pem"
    )
    assert (
        Settings.from_env({"DATABASE_URL": "postgresql://db.example/rebound"}).redacted_database_url()
        == "postgresql://db.example/rebound"
    )


def test_database_password_file_replaces_the_urls(tmp_path: Path) -> None:
    settings = Settings.from_env({"DATABASE_PASSWORD_FILE": _secret_file(tmp_path)})
    assert database_connect_kwargs(settings) == {"password": SECRET}


def test_ssl_context_trusts_the_given_ca_and_checks_hostnames(tls_files: dict[str, str]) -> None:
    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CAFILE": tls_files["ca.pem"],
            "KAFKA_SSL_CERTFILE": tls_files["client.pem"],
            "KAFKA_SSL_KEYFILE": tls_files["client.key"],
        }
    )
    options = kafka_options(settings)
    assert options["security_protocol"] == "SSL"
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    security = kafka_security(settings)
    assert type(security) is BaseSecurity and security.use_ssl and security.ssl_context is not None


def test_sasl_ssl_without_cafile_uses_the_system_cas() -> None:
    settings = Settings.from_env(
        {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "rebound", "KAFKA_SASL_PASSWORD": SECRET}
    )
    options = kafka_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    security = kafka_security(settings)
    assert isinstance(security, SASLScram512) and security.use_ssl


def test_a_key_that_does_not_match_its_certificate_is_one_line(tls_files: dict[str, str]) -> None:
    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CERTFILE": tls_files["client.pem"],
            "KAFKA_SSL_KEYFILE": tls_files["ca.key"],
        }
    )
    with pytest.raises(SettingsError, match="^KAFKA_SSL_CAFILE/KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE cannot be loaded"):
        kafka_options(settings)


@pytest.mark.parametrize(
    "variable", ["REBOUND_RELAY_BATCH_BYTES", "REBOUND_RELAY_BATCH_SIZE", "REBOUND_FETCH_MAX_BYTES"]
)
def test_a_batch_or_fetch_bound_below_one_is_refused_with_its_name(variable: str) -> None:
    # a relay whose batch may hold nothing would publish nothing, and say nothing of it
    with pytest.raises(SettingsError, match=f"{variable}=0: it must be at least 1"):
        Settings.from_env({variable: "0"})


class _Client:
    closed = False

    async def close(self) -> None:
        self.closed = True


class _Consumer:
    """What `stop_consumer` touches of an AIOKafkaConsumer; `stop` does what it is given."""

    def __init__(self, stop: Callable[[], Awaitable[None]]) -> None:
        self._stop = stop
        self._fetcher = None
        self._client = _Client()

    async def stop(self) -> None:
        await self._stop()


async def test_a_cancelled_error_raised_inside_the_stop_closes_the_client_and_is_not_raised() -> None:
    async def raises() -> None:
        raise asyncio.CancelledError

    consumer = _Consumer(raises)
    await stop_consumer(consumer)
    assert consumer._client.closed


async def test_a_caller_cancelled_during_the_stop_is_cancelled_once_the_client_is_closed() -> None:
    consumer = _Consumer(lambda: asyncio.sleep(3600))
    task = asyncio.create_task(stop_consumer(consumer))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer._client.closed
