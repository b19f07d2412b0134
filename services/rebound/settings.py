"""Settings from the environment. Built by the entrypoint at start, never at import time."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_KAFKA = "127.0.0.1:19092"
DEFAULT_DATABASE = "postgresql://rebound:localdev-7f3a9c@127.0.0.1:15432/rebound"


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = DEFAULT_KAFKA
    database_url: str = DEFAULT_DATABASE
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    batch_max_records: int = 500
    max_message_bytes: int = 256 * 1024
    relay_batch_size: int = 2000
    pool_size: int = 4
    unmatched_parcel_after_s: float = 900.0
    inbox_retention_s: float = 7 * 24 * 3600.0
    inbox_prune_every_s: float = 300.0
    http_port: int | None = None  # None: no HTTP server (/health, /ready, /metrics)
    http_host: str = "0.0.0.0"
    ready_max_lag: int = 10000
    otlp_endpoint: str | None = None  # None: trace context is passed on, no spans are exported

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            kafka_bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA),
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE),
            log_format=env.get("REBOUND_LOG_FORMAT", "auto"),
            log_level=env.get("REBOUND_LOG_LEVEL", "info"),
            batch_max_records=int(env.get("REBOUND_BATCH_MAX_RECORDS", "500")),
            max_message_bytes=int(env.get("REBOUND_MAX_MESSAGE_BYTES", str(256 * 1024))),
            relay_batch_size=int(env.get("REBOUND_RELAY_BATCH_SIZE", "2000")),
            pool_size=int(env.get("REBOUND_POOL_SIZE", "4")),
            unmatched_parcel_after_s=float(env.get("REBOUND_UNMATCHED_PARCEL_AFTER_S", "900")),
            inbox_retention_s=float(env.get("REBOUND_INBOX_RETENTION_S", str(7 * 24 * 3600))),
            inbox_prune_every_s=float(env.get("REBOUND_INBOX_PRUNE_EVERY_S", "300")),
            http_port=int(port) if (port := env.get("REBOUND_HTTP_PORT", "").strip()) else None,
            http_host=env.get("REBOUND_HTTP_HOST", "0.0.0.0"),
            ready_max_lag=int(env.get("REBOUND_READY_MAX_LAG", "10000")),
            otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or None,
        )

    def redacted_database_url(self) -> str:
        """The database URL with its password replaced, for logs."""
        scheme, sep, rest = self.database_url.partition("://")
        if "@" not in rest:
            return self.database_url
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
