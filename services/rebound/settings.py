"""Settings from the environment. Built by the entrypoint at start, never at import time.

Credentials come only from the environment or from secrets files named there; they are kept out
of `repr` and out of every error raised here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_KAFKA = "127.0.0.1:19092"
LOCAL_DATABASE_PASSWORD = "localdev-7f3a9c"
"""The password of the local development cluster `make up` starts (deploy/scripts/postgres.sh and
deploy/compose.yaml say the same; a deployment test holds them to this). Distinctive, so a test
can search a run's logs for it."""
DEFAULT_DATABASE = f"postgresql://rebound:{LOCAL_DATABASE_PASSWORD}@127.0.0.1:15432/rebound"

KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
DEFAULT_SASL_MECHANISM = "SCRAM-SHA-512"
URL_SECRETS = frozenset({"password", "sslpassword"})
"""Query parameters of a PostgreSQL URL that hold a secret."""


class SettingsError(SystemExit):
    """A setting is missing, unreadable or contradicts another. A SystemExit, so the process stops
    at start with this one line (naming the setting) instead of a traceback."""


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = DEFAULT_KAFKA
    database_url: str = field(default=DEFAULT_DATABASE, repr=False)  # may hold a password
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    batch_max_records: int = 500
    # How long the broker may hold a fetch that has no new records, and how long one poll for a
    # batch waits before it returns empty (records end it at once). A commit ends a held fetch
    # (tests/integration/test_fetch_hold.py), so the hold costs no latency; a short one costs a
    # fetch every few ms per idle consumer (docs/benchmarks.md, "Fetch hold").
    fetch_max_wait_ms: int = 500
    # The hold of a fetch that follows one which brought nothing, with no fetched record waiting
    # (service.FetchHold): an idle consumer asks the broker less often.
    idle_fetch_wait_ms: int = 2000
    batch_wait_ms: int = 500
    # The least time between two offset commits of a consumer (see messaging.commits).
    commit_interval_ms: int = 500
    max_message_bytes: int = 256 * 1024
    # Bytes one fetch of a consumer brings at most (a partition's first record batch comes whatever
    # its size): under a backlog of large records, what a consumer holds before it applies them.
    fetch_max_bytes: int = 1024 * 1024
    # Advisory locks one transaction of a consumer takes at most: a batch needing more is applied
    # in consecutive transactions, so the server's lock table is never exhausted by a few batches.
    max_locks_per_transaction: int = 512
    relay_batch_size: int = 2000
    # Bytes of payload a relay batch holds at most (its first row whatever its size): a backlog of
    # dead letters and exceptions, each carrying up to a whole message, stays this small in memory.
    relay_batch_bytes: int = 4 * 1024 * 1024
    pool_size: int = 4
    unmatched_parcel_after_s: float = 900.0
    waiting_case_after_s: float = 3600.0  # console: an inspection waiting this long for its receipt is a case
    inbox_retention_s: float = 7 * 24 * 3600.0
    inbox_prune_every_s: float = 300.0
    reconcile_every_s: float = 300.0  # connectors: how often each listing's number is compared
    http_port: int | None = None  # None: no HTTP server (/health, /ready, /metrics)
    http_host: str = "0.0.0.0"
    ready_max_lag: int = 10000
    stall_after_s: float = 120.0  # a partition not caught up whose position stands still this long is stalled
    otlp_endpoint: str | None = None  # None: trace context is passed on, no spans are exported
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None  # SCRAM-SHA-512 when the protocol is SASL_* and none is set
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = field(default=None, repr=False)
    kafka_ssl_cafile: str | None = None  # None: the system's CA certificates
    kafka_ssl_certfile: str | None = None  # client certificate (mutual TLS), with kafka_ssl_keyfile
    kafka_ssl_keyfile: str | None = None
    database_password: str | None = field(default=None, repr=False)  # replaces the URL's password
    # Signs the console's sessions and CSRF tokens; None: a random one per start (sessions end
    # when the console stops), which is right for one local console and wrong for replicas.
    console_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in (
            "relay_batch_size",
            "relay_batch_bytes",
            "fetch_max_bytes",
            "batch_max_records",
            "max_locks_per_transaction",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"REBOUND_{name.upper()}={getattr(self, name)}: it must be at least 1")
        protocol = self.kafka_security_protocol
        if protocol not in KAFKA_PROTOCOLS:
            raise SettingsError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(KAFKA_PROTOCOLS)}")
        if self.uses_sasl:
            if self.kafka_sasl_mechanism is None:
                object.__setattr__(self, "kafka_sasl_mechanism", DEFAULT_SASL_MECHANISM)
            if self.kafka_sasl_mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    f"KAFKA_SASL_MECHANISM={self.kafka_sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}"
                )
            if not self.kafka_sasl_username:
                raise SettingsError(f"KAFKA_SASL_USERNAME is required with KAFKA_SECURITY_PROTOCOL={protocol}")
            if not self.kafka_sasl_password:
                raise SettingsError(
                    "KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE is required with "
                    f"KAFKA_SECURITY_PROTOCOL={protocol}"
                )
        else:
            for name, value in (
                ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            ):
                if value:
                    raise SettingsError(
                        f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                        "(use SASL_PLAINTEXT or SASL_SSL)"
                    )
        tls_files = (
            ("KAFKA_SSL_CAFILE", self.kafka_ssl_cafile),
            ("KAFKA_SSL_CERTFILE", self.kafka_ssl_certfile),
            ("KAFKA_SSL_KEYFILE", self.kafka_ssl_keyfile),
        )
        for name, path in tls_files:
            if path and not self.uses_tls:
                raise SettingsError(
                    f"{name} is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS (use SSL or SASL_SSL)"
                )
            if path and not os.access(path, os.R_OK):
                raise SettingsError(f"{name}={path} is not a readable file")
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise SettingsError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together: set both or neither")

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA),
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE),
            log_format=env.get("REBOUND_LOG_FORMAT", "auto"),
            log_level=env.get("REBOUND_LOG_LEVEL", "info"),
            batch_max_records=int(env.get("REBOUND_BATCH_MAX_RECORDS", "500")),
            fetch_max_wait_ms=int(env.get("REBOUND_FETCH_MAX_WAIT_MS", "500")),
            idle_fetch_wait_ms=int(env.get("REBOUND_IDLE_FETCH_WAIT_MS", "2000")),
            batch_wait_ms=int(env.get("REBOUND_BATCH_WAIT_MS", "500")),
            commit_interval_ms=int(env.get("REBOUND_COMMIT_INTERVAL_MS", "500")),
            max_message_bytes=int(env.get("REBOUND_MAX_MESSAGE_BYTES", str(256 * 1024))),
            fetch_max_bytes=int(env.get("REBOUND_FETCH_MAX_BYTES", str(1024 * 1024))),
            max_locks_per_transaction=int(env.get("REBOUND_MAX_LOCKS_PER_TRANSACTION", "512")),
            relay_batch_size=int(env.get("REBOUND_RELAY_BATCH_SIZE", "2000")),
            relay_batch_bytes=int(env.get("REBOUND_RELAY_BATCH_BYTES", str(4 * 1024 * 1024))),
            pool_size=int(env.get("REBOUND_POOL_SIZE", "4")),
            unmatched_parcel_after_s=float(env.get("REBOUND_UNMATCHED_PARCEL_AFTER_S", "900")),
            waiting_case_after_s=float(env.get("REBOUND_WAITING_CASE_AFTER_S", "3600")),
            inbox_retention_s=float(env.get("REBOUND_INBOX_RETENTION_S", str(7 * 24 * 3600))),
            inbox_prune_every_s=float(env.get("REBOUND_INBOX_PRUNE_EVERY_S", "300")),
            reconcile_every_s=float(env.get("REBOUND_RECONCILE_EVERY_S", "300")),
            http_port=int(port) if (port := env.get("REBOUND_HTTP_PORT", "").strip()) else None,
            http_host=env.get("REBOUND_HTTP_HOST", "0.0.0.0"),
            ready_max_lag=int(env.get("REBOUND_READY_MAX_LAG", "10000")),
            stall_after_s=float(env.get("REBOUND_STALL_AFTER_S", "120")),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None,
            kafka_security_protocol=(_set(env.get("KAFKA_SECURITY_PROTOCOL")) or "PLAINTEXT").upper(),
            kafka_sasl_mechanism=m.upper() if (m := _set(env.get("KAFKA_SASL_MECHANISM"))) else None,
            kafka_sasl_username=_set(env.get("KAFKA_SASL_USERNAME")),
            kafka_sasl_password=_secret(
                "KAFKA_SASL_PASSWORD", env.get("KAFKA_SASL_PASSWORD"), env.get("KAFKA_SASL_PASSWORD_FILE")
            ),
            kafka_ssl_cafile=_set(env.get("KAFKA_SSL_CAFILE")),
            kafka_ssl_certfile=_set(env.get("KAFKA_SSL_CERTFILE")),
            kafka_ssl_keyfile=_set(env.get("KAFKA_SSL_KEYFILE")),
            database_password=_secret("DATABASE_PASSWORD", None, env.get("DATABASE_PASSWORD_FILE")),
            console_secret=_secret(
                "REBOUND_CONSOLE_SECRET", env.get("REBOUND_CONSOLE_SECRET"), env.get("REBOUND_CONSOLE_SECRET_FILE")
            ),
        )

    def redacted_database_url(self) -> str:
        """The database URL for logs: every password it can carry replaced (`user:password@`, and
        the `password` and `sslpassword` parameters of its query)."""
        scheme, sep, rest = self.database_url.partition("://")
        rest, mark, query = rest.partition("?")
        if "@" in rest:
            credentials, _, host = rest.rpartition("@")
            rest = f"{credentials.split(':', 1)[0]}:***@{host}"
        if query:
            query = "&".join(
                f"{part.partition('=')[0]}=***" if part.partition("=")[0].lower() in URL_SECRETS else part
                for part in query.split("&")
            )
        return f"{scheme}{sep}{rest}{mark}{query}"


def _set(value: str | None) -> str | None:
    """A variable's value, or None when it is unset or blank (an empty ConfigMap entry)."""
    return (value or "").strip() or None


def _secret(name: str, inline: str | None, file: str | None) -> str | None:
    """A secret from the variable `name` or from the file that `name`_FILE names (e.g. a mounted
    Kubernetes Secret), read once at start. Setting both is an error: which one wins would be a guess."""
    file_name, path, inline = f"{name}_FILE", _set(file), inline or None
    if path is None:
        return inline
    if inline is not None:
        raise SettingsError(f"{name} and {file_name} are both set: set one")
    try:
        with open(path, encoding="utf-8") as secret:
            value = secret.read().rstrip("\r\n")  # `kubectl create secret --from-file` keeps a final newline
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(
            f"{file_name}={path} cannot be read ({type(error).__name__}: "
            f"{getattr(error, 'strerror', None) or 'not UTF-8 text'})"
        ) from None
    if not value:
        raise SettingsError(f"{file_name}={path} is empty")
    return value
