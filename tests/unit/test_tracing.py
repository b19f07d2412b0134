"""Trace context: parsed strictly, passed on when tracing is off, a child span when it is on."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from rebound import tracing
from rebound.tracing import Tracing

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (PARENT.encode(), PARENT),
        (PARENT.upper(), PARENT),
        (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),  # no flags
        (b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),  # unknown version
        ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", None),  # all-zero trace id
        (b"\xff\xfe", None),
        (None, None),
    ],
)
def test_only_a_valid_traceparent_is_taken(raw: bytes | str | None, expected: str | None) -> None:
    assert tracing.parse(raw) == expected


def test_the_header_is_found_among_others() -> None:
    assert tracing.of_record([("rebound-outbox-id", b"7"), ("traceparent", PARENT.encode())]) == PARENT
    assert tracing.of_record(None) is None


def test_off_by_default_the_events_carry_the_records_own_context() -> None:
    off = Tracing("grading")
    with off.applying("wms.unit-inspected.v1", PARENT, {}) as carried:
        assert carried == PARENT
    with off.applying("wms.unit-inspected.v1", None, {}) as carried:
        assert carried is None


def test_when_exporting_each_record_is_a_child_span_and_its_events_carry_that_span() -> None:
    exporter = InMemorySpanExporter()
    on = Tracing("grading", exporter=exporter)
    with on.applying("wms.unit-inspected.v1", PARENT, {"rebound.seller_id": "s1"}) as carried:
        pass
    [span] = exporter.get_finished_spans()
    assert tracing.trace_id(carried) == tracing.trace_id(PARENT)
    assert carried is not None
    assert span.context is not None and span.parent is not None and span.attributes is not None
    assert carried.split("-")[2] == format(span.context.span_id, "016x") != PARENT.split("-")[2]
    assert format(span.parent.span_id, "016x") == PARENT.split("-")[2]
    assert (span.name, span.attributes["rebound.seller_id"]) == ("apply wms.unit-inspected.v1", "s1")
    with on.applying("returns.rma.v1", None, {}) as root:  # no context came: a trace starts here
        pass
    assert tracing.parse(root) is not None and tracing.trace_id(root) != tracing.trace_id(PARENT)
    on.shutdown()
