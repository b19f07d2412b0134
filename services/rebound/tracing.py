"""W3C trace context across services: the `traceparent` header of a consumed record travels,
through the outbox, on every event its handler emits, so one unit's path from the WMS scan to
the storefront adjustment is one trace.

Off by default: records keep the trace id they came with and nothing is exported. With
`OTEL_EXPORTER_OTLP_ENDPOINT` set, each applied record becomes an OpenTelemetry span (a child of
the record's own context) exported over OTLP/HTTP, and the events it causes carry that span.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import structlog

log = structlog.get_logger(__name__)

HEADER = "traceparent"
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse(value: bytes | str | None) -> str | None:
    """A valid version-00 `traceparent`, or None (a malformed header is dropped, never fatal)."""
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    text = text.strip().lower()
    match = _TRACEPARENT.match(text)
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return text


def trace_id(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


def of_record(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    for key, value in headers or ():
        if key == HEADER:
            return parse(value)
    return None


class Tracing:
    """Spans for applied records when an OTLP endpoint is configured; pass-through otherwise."""

    def __init__(self, service: str, otlp_endpoint: str | None = None, *, exporter: Any = None) -> None:
        self.enabled = bool(otlp_endpoint) or exporter is not None
        self._tracer = None
        self._provider = None
        if not self.enabled:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self._provider = TracerProvider(resource=Resource.create({"service.name": f"rebound-{service}"}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = (otlp_endpoint or "").rstrip("/")  # enabled: an endpoint or an exporter
            exporter = OTLPSpanExporter(
                endpoint=endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"
            )
            self._provider.add_span_processor(BatchSpanProcessor(exporter))
        else:
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("rebound")
        self._propagator = TraceContextTextMapPropagator()
        self._consumer_kind = SpanKind.CONSUMER
        log.info("tracing_enabled", service=service, endpoint=otlp_endpoint or "in-process")

    @contextmanager
    def applying(self, topic: str, parent: str | None, attributes: dict[str, Any]) -> Iterator[str | None]:
        """Around one record's handler: yields the `traceparent` its events should carry."""
        if self._tracer is None:
            yield parent
            return
        context = self._propagator.extract({HEADER: parent}) if parent else None
        with self._tracer.start_as_current_span(
            f"apply {topic}",
            context=context,
            kind=self._consumer_kind,
            attributes={"messaging.destination.name": topic, **attributes},
        ):
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            yield carrier.get(HEADER)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
