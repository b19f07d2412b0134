"""Relisting as a FastStream app: consumes grades, emits dispositions via the outbox."""

from __future__ import annotations

from faststream import FastStream

from rebound_contracts.topics import UNIT_GRADED

from ..messaging.processor import Route
from ..service import ServiceSpec, build_app
from ..settings import Settings
from .adapters import RelistingRepository
from .handlers import decide_disposition


def spec() -> ServiceSpec:
    # No locks: a decision reads only the seller's policy, and grades of one LPN share a partition.
    return ServiceSpec(name="relisting", routes=(Route(UNIT_GRADED, decide_disposition, RelistingRepository),))


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())
