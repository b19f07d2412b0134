"""A seller's report for a period of days: read the facts, build the report."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta


from .domain import build_report
from .model import SellerReport
from .queries import seller_exists, unit_facts
from ..db import Connection

DEFAULT_DAYS = 90


class UnknownSeller(LookupError):
    pass


def period_bounds(period_from: date, period_to: date) -> tuple[datetime, datetime]:
    """[the first day's start, the day after the last one's start), in UTC."""
    if period_to < period_from:
        raise ValueError(f"--to {period_to} is before --from {period_from}")
    return (datetime.combine(period_from, time(), UTC), datetime.combine(period_to + timedelta(days=1), time(), UTC))


def default_period(today: date, period_from: date | None, period_to: date | None) -> tuple[date, date]:
    end = period_to or today
    return (period_from or end - timedelta(days=DEFAULT_DAYS - 1), end)


async def seller_report(
    conn: Connection, seller_id: str, period_from: date, period_to: date, now: datetime
) -> SellerReport:
    start, end = period_bounds(period_from, period_to)
    if not await seller_exists(conn, seller_id):
        raise UnknownSeller(f"seller {seller_id} is not registered")
    units = await unit_facts(conn, seller_id, start, end)
    return build_report(seller_id, period_from, period_to, units, now)
