"""eBay (Sell Inventory and Fulfillment APIs): a listing's quantity, read, written and sold.

A listing is a published offer (`offer_id`) of an inventory item (`sku`). Buyers can buy the
smaller of the item's ship-to-home quantity and the offer's `availableQuantity`, so a write sets
both, in one `bulkUpdatePriceQuantity` call, absolute; its answer is 200 or 207 with a result per
offer, each with its own `statusCode`. Sales are the Fulfillment API's orders, read live.

eBay allows 250 revisions of a listing a calendar day, then refuses more until the next day: the
adapter paces each listing's writes (`RevisionPacing`) so that a listing selling fast in a live
stream never spends the day's budget in minutes; a write that would exceed the pace is `NotYet`
before it is sent, and the connector coalesces what waits into one later write.

Calls carry a seller's user access token (about 2 h), refreshed with the long-lived refresh token
and the app's client credentials. The refresh token does not rotate: only the access token and its
expiry change, and `on_refresh` stores them before they are used.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from datetime import time as day_start
from decimal import Decimal
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import structlog

from .domain import TokenBucket
from .marketplace import NotYet, Paused, Refused, Throttled, Unauthorized, Unavailable

log = structlog.get_logger(__name__)

API = "https://api.ebay.com"
INVENTORY = "/sell/inventory/v1"
FULFILLMENT = "/sell/fulfillment/v1"
TOKEN = "/identity/v1/oauth2/token"
SCOPES = (
    "https://api.ebay.com/oauth/api_scope/sell.inventory",
    "https://api.ebay.com/oauth/api_scope/sell.fulfillment",
)
MAXIMUM = 2_147_483_647
"""`availableQuantity` and `quantity` are 32-bit integers; eBay publishes no lower cap (a seller's
selling limits refuse more, error 25026)."""

INVALID_TOKEN = 1001
RATE_LIMITED = 2001
CANNOT_REVISE = 25019
ON_HOLD = 25097
"""The listing is on hold for a policy violation and cannot be revised: `paused`."""
"""eBay's "Cannot revise the listing", which also carries the daily revision limit."""
START_IN_FUTURE = 30850

REVISIONS_A_DAY = 250
PACE_BURST = 50
PACE_PER_S = (REVISIONS_A_DAY - PACE_BURST) / (25 * 3600)
"""A listing's writes: 50 at once, then one every 450 s (8 an hour). 50 + 25 h x 8 = 250: no
calendar day, however eBay cuts it and even the 25-hour one of a DST change, can hold more than
250, whatever happened the day before."""
NEXT_DAY_MARGIN_S = 60.0
"""After eBay's day boundary, a minute more for the clocks' disagreement."""
REFRESH_AHEAD_S = 60.0
THROTTLED_WAIT_S = 60.0
"""eBay's 429s are daily quotas and carry no documented Retry-After: a minute between tries."""
ORDERS_WINDOW_S = 90 * 86_400 - 3_600
"""The Fulfillment API's filter reaches 90 days back, no further (error 30830)."""
PAGE = 200


def _pacific() -> tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:  # no time-zone database: standard time, whose midnight is never early
        return timezone(timedelta(hours=-8), "PST")


PACIFIC = _pacific()


def revision_day(at: float) -> date:
    """The calendar day a revision at `at` (Unix seconds) counts in. eBay does not say which time
    zone its "calendar day" is in; its call limits' days are Pacific time, and Pacific midnight
    comes after the local midnight of every eBay marketplace, so a wait until it is always enough."""
    return datetime.fromtimestamp(at, PACIFIC).date()


def seconds_to_next_day(at: float) -> float:
    """From `at` to the next Pacific midnight."""
    midnight = datetime.combine(revision_day(at) + timedelta(days=1), day_start(), PACIFIC)
    return midnight.timestamp() - at


@dataclass(frozen=True)
class Credentials:
    """One seller's consent to one app. A refresh changes the access token and its expiry only;
    the refresh token lasts about 18 months, then the seller consents again."""

    client_id: str
    client_secret: str
    access_token: str
    refresh_token: str
    access_token_expires_at: float = 0.0
    """When the access token expires, Unix seconds (eBay answers `expires_in`, relative)."""
    scopes: tuple[str, ...] = SCOPES

    def __repr__(self) -> str:  # never the secret or the tokens, in a log or a traceback
        return f"Credentials(client_id={self.client_id!r}, access_token_expires_at={self.access_token_expires_at!r})"


class RevisionPacing:
    """The revisions each listing may have now: a token bucket per listing (`burst`, refilled at
    `per_s`). Keep one per shop for the life of the process, handed to each adapter built for it,
    so that a rebuilt adapter (after a token refresh) does not start a listing's budget again. A
    restarted process does; eBay's refusal of the 251st revision, read as `NotYet` until the next
    day, is the backstop."""

    def __init__(self, burst: float = PACE_BURST, per_s: float = PACE_PER_S) -> None:
        self.burst, self.per_s = burst, per_s
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, listing_id: str) -> TokenBucket:
        return self._buckets.setdefault(listing_id, TokenBucket(self.per_s, self.burst))

    def wait(self, listing_id: str, now: float) -> float:
        """Seconds until `listing_id` may be revised (0: now)."""
        return self._bucket(listing_id).wait(now)

    def spend(self, listing_id: str, now: float) -> None:
        bucket = self._bucket(listing_id)
        bucket.take(now)
        bucket.tokens = max(bucket.tokens, 0.0)  # one sent while others were in flight adds no debt

    def close(self, listing_id: str, now: float, seconds: float) -> None:
        """eBay refused a revision for the day: none before `seconds` from `now`."""
        self._bucket(listing_id).back_off(now, seconds)


class _Refusal(Refused):
    """A refusal with eBay's error ids, for the callers that tell some of them apart."""

    def __init__(self, message: str, ids: Iterable[int]) -> None:
        super().__init__(message)
        self.ids = frozenset(ids)


class EbayShop:
    """An eBay seller as the connector sees it (`marketplace.Marketplace`). `listing` holds `sku`
    and `offer_id`; no call used here needs the marketplace id. `on_refresh` stores a new access
    token before it is used; `pacing` is the shop's `RevisionPacing`."""

    maximum = MAXIMUM
    compare_and_set = False
    idempotent = False

    def __init__(
        self,
        credentials: Credentials,
        client: httpx.AsyncClient,
        *,
        api: str = API,
        on_refresh: Callable[[Credentials], Awaitable[None]] | None = None,
        pacing: RevisionPacing | None = None,
        page_size: int = PAGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.client = client
        self.api = api.rstrip("/")
        self.on_refresh = on_refresh
        self.pacing = pacing or RevisionPacing()
        self.page_size = page_size
        self.clock = clock
        self._refreshing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"EbayShop({self.api!r}, {self.credentials!r})"

    async def quantity(self, listing: Mapping[str, str]) -> int:
        """What buyers can buy: the smaller of the item's and the offer's quantities."""
        sku, offer_id = listing["sku"], listing["offer_id"]
        item = await self._call("GET", f"{INVENTORY}/inventory_item/{quote(sku, safe='')}")
        offer = await self._call("GET", f"{INVENTORY}/offer/{quote(offer_id, safe='')}")
        if offer.get("sku", sku) != sku:
            raise Refused(f"offer {offer_id} is of SKU {offer.get('sku')}, not {sku}")
        shipped = ((item.get("availability") or {}).get("shipToLocationAvailability") or {}).get("quantity", 0)
        available = offer.get("availableQuantity")
        return int(shipped) if available is None else min(int(shipped), int(available))

    async def set_quantity(
        self, listing: Mapping[str, str], quantity: int, *, seen: int | None = None, key: str | None = None
    ) -> None:
        """An absolute write of both quantities: eBay takes neither the number it replaces nor a
        key. `NotYet` before sending when the listing's revisions are paced out."""
        sku, offer_id = listing["sku"], listing["offer_id"]
        await self._revise(
            offer_id,
            {
                "requests": [
                    {
                        "sku": sku,
                        "shipToLocationAvailability": {"quantity": quantity},
                        "offers": [{"offerId": offer_id, "availableQuantity": quantity}],
                    }
                ]
            },
        )

    async def _revise(self, offer_id: str, body: Mapping[str, Any]) -> None:
        """One revision of the listing: `NotYet` before sending when its revisions are paced out."""
        wait = self.pacing.wait(offer_id, self.clock())
        if wait > 0:
            raise NotYet(
                f"offer {offer_id}: revisions are paced to {REVISIONS_A_DAY} a day; the next in {wait:.0f} s", wait
            )
        try:
            answer = await self._call("POST", f"{INVENTORY}/bulk_update_price_quantity", body)
        except Unavailable:
            self.pacing.spend(offer_id, self.clock())  # it may have landed
            raise
        self.pacing.spend(offer_id, self.clock())
        self._written(offer_id, answer.get("responses") or [])

    async def set_price(self, listing: Mapping[str, str], amount: Decimal, currency: str) -> None:
        """The offer's price: a revision of the listing like any, paced with them."""
        await self._revise(
            listing["offer_id"],
            {
                "requests": [
                    {
                        "sku": listing["sku"],
                        "offers": [
                            {"offerId": listing["offer_id"], "price": {"value": str(amount), "currency": currency}}
                        ],
                    }
                ]
            },
        )

    def _written(self, offer_id: str, results: list[Mapping[str, Any]]) -> None:
        """Each result's own `statusCode` says what became of it, whatever the call's status."""
        if not results:
            raise Unavailable(f"offer {offer_id}: the write answered no result")
        for result in results:
            if result.get("warnings"):
                log.info("ebay_write_warnings", offer_id=offer_id, warnings=[_describe(w) for w in result["warnings"]])
        failed = [r for r in results if r.get("statusCode") != 200]
        errors = [e for r in failed for e in r.get("errors") or []]
        if not failed:
            return
        if any(revision_limit_reached(e) for e in errors):
            now = self.clock()
            wait = seconds_to_next_day(now) + NEXT_DAY_MARGIN_S
            self.pacing.close(offer_id, now, wait)
            raise NotYet(f"offer {offer_id}: {'; '.join(_describe(e) for e in errors)}", wait)
        message = "; ".join(_describe(e) for e in errors) or f"status {failed[0].get('statusCode')}"
        if all(int(r.get("statusCode") or 0) >= 500 for r in failed):
            raise Unavailable(f"offer {offer_id}: {message}")
        held = any(e.get("errorId") == ON_HOLD for e in errors)
        raise (Paused if held else Refused)(f"offer {offer_id}: {message}")

    async def sales_since(
        self, listing: Mapping[str, str], since_s: int, *, known_at: float | None = None
    ) -> frozenset[str]:
        """Units of `listing`'s SKU in orders created since `since_s`, cancelled orders left out:
        `{orderId}/{lineItemId}#{n}` for each unit of a line item. The Fulfillment API is live, so
        `known_at` holds already."""
        start = max(since_s, self.clock() - ORDERS_WINDOW_S)
        stamp = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        sold: set[str] = set()
        offset = 0
        while True:
            query = {"filter": f"creationdate:[{stamp}..]", "limit": str(self.page_size), "offset": str(offset)}
            try:
                page = await self._call("GET", f"{FULFILLMENT}/order", params=query)
            except _Refusal as error:
                if START_IN_FUTURE in error.ids:  # eBay's clock is behind ours: nothing sold since
                    return frozenset()
                raise
            orders = page.get("orders") or []
            sold |= _units(orders, listing["sku"])
            offset += len(orders)
            if not orders or not page.get("next") or offset >= int(page.get("total") or 0):
                return frozenset(sold)

    async def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, params: Mapping[str, str] | None = None
    ) -> dict:
        for attempt in (1, 2):
            if self.credentials.access_token_expires_at - self.clock() < REFRESH_AHEAD_S:
                await self._refresh_from(self.credentials.access_token)
            token = self.credentials.access_token
            response = await self._send(method, path, token, body, params)
            if response.status_code == 401 and INVALID_TOKEN in _error_ids(response) and attempt == 1:
                await self._refresh_from(token)
                continue
            return _read(path, response)
        raise AssertionError("unreachable")

    async def _send(
        self, method: str, path: str, token: str, body: Mapping[str, Any] | None, params: Mapping[str, str] | None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            return await self.client.request(method, self.api + path, json=body, params=params, headers=headers)
        except httpx.HTTPError as error:
            raise Unavailable(f"{path}: {type(error).__name__}: {error}") from error

    async def _refresh_from(self, stale: str) -> None:
        """One refresh for all the calls that found `stale` expired at once."""
        async with self._refreshing:
            if self.credentials.access_token == stale:
                await self.refresh()

    async def refresh(self) -> None:
        """A new access token from the refresh token, stored through `on_refresh` first."""
        c = self.credentials
        try:
            response = await self.client.post(
                self.api + TOKEN,
                auth=(c.client_id, c.client_secret),
                data={"grant_type": "refresh_token", "refresh_token": c.refresh_token, "scope": " ".join(c.scopes)},
            )
        except httpx.HTTPError as error:
            raise Unavailable(f"token refresh: {type(error).__name__}: {error}") from error
        if response.status_code == 429:
            raise Throttled("token refresh: HTTP 429", _retry_after(response))
        if response.status_code >= 500:
            raise Unavailable(f"token refresh: HTTP {response.status_code}")
        answer = _json(response)
        if response.status_code != 200 or not answer.get("access_token"):
            raise Unauthorized(
                f"token refresh: HTTP {response.status_code} {answer.get('error', '')}: "
                f"{answer.get('error_description', '')}"
            )
        fresh = replace(
            c,
            access_token=answer["access_token"],
            access_token_expires_at=self.clock() + float(answer.get("expires_in") or 7200),
            refresh_token=answer.get("refresh_token") or c.refresh_token,
        )
        if self.on_refresh is not None:
            await self.on_refresh(fresh)
        self.credentials = fresh
        log.info("ebay_token_refreshed", client_id=c.client_id, expires_at=fresh.access_token_expires_at)


def _read(path: str, response: httpx.Response) -> dict:
    """The answer of a call, or the outcome its status and eBay's error envelope say."""
    answer = _json(response)
    errors = answer.get("errors") or []
    described = "; ".join(_describe(e) for e in errors) or response.text[:200]
    if response.status_code == 429:
        raise Throttled(f"{path}: HTTP 429 {described}", _retry_after(response))
    if response.status_code >= 500:
        raise Unavailable(f"{path}: HTTP {response.status_code} {described}")
    if response.status_code in (401, 403):
        raise Unauthorized(f"{path}: HTTP {response.status_code} {described}")
    if response.status_code >= 400:
        raise _Refusal(f"{path}: {described}", _error_ids(response))
    return answer


def _json(response: httpx.Response) -> dict:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _error_ids(response: httpx.Response) -> set[int]:
    return {e["errorId"] for e in _json(response).get("errors") or [] if isinstance(e, dict) and "errorId" in e}


def _describe(error: Mapping[str, Any]) -> str:
    """eBay's own words for an error: its id, message, longer message and the values it names."""
    text = f"{error.get('errorId', '')} {error.get('message', '')}".strip()
    if (longer := error.get("longMessage")) and longer != error.get("message"):
        text += f": {longer}"
    values = [str(p.get("value")) for p in error.get("parameters") or [] if p.get("value")]
    return f"{text} ({'; '.join(values)})" if values else text


def revision_limit_reached(error: Mapping[str, Any]) -> bool:
    """25019 "Cannot revise listing" says why in its text: the daily revision limit is one reason
    (and clears tomorrow), an account or listing block another (which does not)."""
    if error.get("errorId") != CANNOT_REVISE:
        return False
    words = [error.get("message"), error.get("longMessage"), *(p.get("value") for p in error.get("parameters") or [])]
    text = " ".join(str(w) for w in words if w).lower()
    return "revis" in text and re.search(r"\b(250|limit|maximum|per day|today)\b", text) is not None


def _units(orders: Iterable[Mapping[str, Any]], sku: str) -> set[str]:
    sold: set[str] = set()
    for order in orders:
        if (order.get("cancelStatus") or {}).get("cancelState") == "CANCELED":
            continue
        for item in order.get("lineItems") or []:
            if item.get("sku") == sku:
                sold |= {
                    f"{order.get('orderId')}/{item.get('lineItemId')}#{n}"
                    for n in range(int(item.get("quantity") or 1))
                }
    return sold


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("retry-after", THROTTLED_WAIT_S)), 0.0)
    except ValueError:
        return THROTTLED_WAIT_S
