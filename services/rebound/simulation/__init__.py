"""Simulation and verification, shipped with Rebound (the demo, the tests, the benchmark and the
compose file use them): a deterministic return wave (`wave`), its sales (`sales`), publishing it
(`publish`), the services as processes (`fleet`), the independent guarantee check (`checker`) and
the demo (`demo`)."""

from .publish import publish, register_sellers
from .sales import Offered, offered_units, picks_for_orders, sales, units_on_keys
from .wave import HOSTILE_KINDS, SCHEMA_INVALID_KINDS, Outgoing, Wave, WaveConfig, catalogue, generate

__all__ = [
    "HOSTILE_KINDS",
    "SCHEMA_INVALID_KINDS",
    "Offered",
    "Outgoing",
    "Wave",
    "WaveConfig",
    "catalogue",
    "generate",
    "offered_units",
    "picks_for_orders",
    "publish",
    "register_sellers",
    "sales",
    "units_on_keys",
]
