"""The demo's second phase: picks of a deterministic share of the units on offer."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from rebound import simulation
from rebound_contracts.topics import UNIT_PICKED

AT = datetime(2026, 11, 20, tzinfo=UTC)


def test_a_share_of_the_offered_units_is_picked_on_each_units_listing_channel_the_same_way_every_time() -> None:
    offered = [simulation.Offered(f"LPN-{n}", "s1", "W1", ("tiktok", "ebay")[n % 2]) for n in range(50)]
    picks = simulation.sales(offered, 0.6, seed=7, at=AT)
    assert picks == simulation.sales(list(reversed(offered)), 0.6, seed=7, at=AT)
    assert picks != simulation.sales(offered, 0.6, seed=8, at=AT)
    documents = [json.loads(p.value) for p in picks]
    assert len(picks) == 30 and {p.topic for p in picks} == {UNIT_PICKED.name}
    assert len({d["lpn"] for d in documents}) == 30
    channels = {u.lpn: u.channel for u in offered}
    assert all(d["channel"] == channels[d["lpn"]] and p.key.decode() == d["lpn"] for p, d in zip(picks, documents))
    assert simulation.sales(offered, 0.0, seed=7, at=AT) == []
