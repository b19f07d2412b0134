"""Settings turned into client arguments: the one place that knows how Rebound reaches Kafka
(PLAINTEXT, TLS, SASL/SCRAM) and PostgreSQL (the password file). Every client is built with these."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import KafkaError, KafkaTimeoutError
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from .settings import Settings, SettingsError

_FASTSTREAM_SASL = {"SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext}


class KafkaRefused(Exception):
    """The broker answered but will not let this client in (credentials, mechanism or TLS).
    Not transient: waiting would not help."""


def kafka_away(error: BaseException) -> bool:
    """Is `error` what a broker that is down, restarting or moving leaders causes, so the same
    request may succeed later? A broker's refusal (credentials, ACLs, a bad topic setting) is not."""
    if isinstance(error, KafkaError):
        return error.retriable or isinstance(error, KafkaTimeoutError)
    return isinstance(error, (OSError, TimeoutError)) and not isinstance(error, ssl.SSLError)


def being_cancelled() -> bool:
    """Is the running task being cancelled? A CancelledError can also come out of a library's own
    task (see `stop_consumer`); a loop that must outlive any single failure tells the two apart."""
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop `consumer`, whether its broker answers or not. aiokafka's fetcher, when stopped,
    cancels each of its fetch tasks and awaits it; one asleep after a failed fetch (the broker away)
    raises its CancelledError out of `stop()`, which then leaves the other tasks and the connections
    open. That CancelledError is not the caller's: the rest is closed here and nothing is raised
    (docs/decisions/0002-patched-library-internals.md). A caller that is itself being cancelled
    gets its CancelledError once the rest is closed."""
    try:
        await consumer.stop()
        return
    except asyncio.CancelledError:
        cancelled = being_cancelled()
    fetcher = consumer._fetcher
    left = [] if fetcher is None else [t for t in (fetcher._fetch_task, *fetcher._pending_tasks) if not t.done()]
    for task in left:
        task.cancel()
    await asyncio.gather(*left, return_exceptions=True)
    await consumer._client.close()
    if cancelled:
        raise asyncio.CancelledError


def kafka_error_text(error: BaseException) -> str:
    """How a log line names `error`: aiokafka's errors name their class themselves, others do not."""
    return str(error) if isinstance(error, KafkaError) else f"{type(error).__name__}: {error}"


def kafka_ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL and SASL_SSL (hostnames are always checked); None otherwise."""
    if not settings.uses_tls:
        return None
    try:
        return create_ssl_context(
            cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile, keyfile=settings.kafka_ssl_keyfile
        )
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(
            f"KAFKA_SSL_CAFILE/KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE cannot be loaded ({error})"
        ) from None


def kafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every aiokafka client (producer, consumer, admin), besides
    `bootstrap_servers`. Empty for PLAINTEXT."""
    options: dict[str, Any] = {}
    if settings.kafka_security_protocol != "PLAINTEXT":
        options["security_protocol"] = settings.kafka_security_protocol
    if settings.uses_tls:
        options["ssl_context"] = kafka_ssl_context(settings)
    if settings.uses_sasl:
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


def kafka_security(settings: Settings) -> BaseSecurity | None:
    """The same as `kafka_options`, in the form FastStream's KafkaBroker takes (`security=`)."""
    context = kafka_ssl_context(settings)
    mechanism, username, password = (
        settings.kafka_sasl_mechanism,
        settings.kafka_sasl_username,
        settings.kafka_sasl_password,
    )
    if settings.uses_sasl and mechanism and username and password:  # Settings requires all three with SASL
        return _FASTSTREAM_SASL[mechanism](username, password, ssl_context=context, use_ssl=settings.uses_tls)
    if settings.uses_tls:
        return BaseSecurity(ssl_context=context, use_ssl=True)
    return None


def database_connect_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect / create_pool besides the URL: the password from
    DATABASE_PASSWORD_FILE, which asyncpg prefers to the URL's."""
    return {"password": settings.database_password} if settings.database_password else {}


async def kafka_refusal(bootstrap_servers: str, options: Mapping[str, Any], *, timeout_s: float = 10.0) -> str | None:
    """Why the brokers refuse a client with these options, or None when they do not (or cannot be
    reached at all, which is worth waiting for). aiokafka only logs the reason and raises "Unable to
    bootstrap", so a wrong password would otherwise look like a broker that is not up yet."""
    if not options:
        return None
    for host, port, _family in collect_hosts(bootstrap_servers):
        try:
            conn = await asyncio.wait_for(
                create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options), timeout_s
            )
        except (KafkaError, ssl.SSLError) as error:
            # Connection errors are transient; SASL and TLS failures are the broker's answer.
            if isinstance(error, ssl.SSLError) or not getattr(error, "retriable", True):
                user = options.get("sasl_plain_username")
                who = f" as {user!r} ({options.get('sasl_mechanism')})" if user else ""
                return f"Kafka at {host}:{port} refused {options.get('security_protocol')}{who}: {error}"
        except (OSError, TimeoutError):
            continue
        else:
            conn.close()
    return None
