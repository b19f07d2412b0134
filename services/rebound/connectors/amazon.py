"""Amazon SP-API (Listings Items 2021-08-01, Orders v0): a merchant-fulfilled listing's quantity,
read, written and sold.

A write is a JSON Patch `merge` of `/attributes/fulfillment_availability` with an absolute
quantity: no compare-and-set, no idempotency key. `ACCEPTED` means queued, not applied, so
`set_quantity` returns only once the listing's `lastUpdatedDate` shows a change made after the
write was sent; otherwise the connector's read-back would see the number from before it.

Orders v0 allows one `getOrders` a minute (burst 20): far too few to read around every write. A
`SalesCache` per marketplace is refreshed when the adapter's own quota buckets allow and knows up
to which moment it is complete; `sales_since(..., known_at=)` raises `NotYet` until it is.

Access tokens come from Login with Amazon and live in memory only (an hour each): the refresh
token does not rotate, so nothing needs storing when one is fetched.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from .domain import TokenBucket
from .marketplace import NotYet, Refused, Throttled, Unauthorized, Unavailable

log = structlog.get_logger(__name__)

API = "https://sellingpartnerapi-na.amazon.com"
AUTH = "https://api.amazon.com"
MAXIMUM = 999_999
"""Amazon's models give only `minimum: 0`; a cautious ceiling (unconfirmed)."""
CHANNEL = "DEFAULT"
"""The merchant-fulfilled channel; any other code is a fulfilment network (FBA)."""

QUOTAS: Mapping[str, tuple[float, float]] = {
    "getListingsItem": (5.0, 10.0),
    "patchListingsItem": (5.0, 5.0),
    "getOrders": (0.0167, 20.0),
    "getOrderItems": (0.5, 30.0),
}
"""Requests a second and burst per selling partner and operation, as the models document them."""

TOKEN_MARGIN_S = 60.0
EXPIRED = "The access token you provided has expired."
SETTLE_S = 120.0
"""How far behind the moment of a `getOrders` call its answer is trusted to be complete:
`CreatedBefore` must be at least two minutes before the current time, which says orders take that
long to settle (inferred, no figure documented)."""
OVERLAP_S = 60.0
"""Each listing starts this far before the last one ended: status changes of recent orders
(Pending to Canceled) are seen, and a boundary second is never missed."""
RETAIN_S = 2 * 86_400.0
CANCELED = "Canceled"


@dataclass(frozen=True)
class Credentials:
    """One seller's authorisation of one application (Login with Amazon)."""

    client_id: str
    client_secret: str
    refresh_token: str

    def __repr__(self) -> str:  # never the secret or the token, in a log or a traceback
        return f"Credentials(client_id={self.client_id!r})"


@dataclass
class Order:
    purchased: float
    status: str
    items: tuple[tuple[str, str, int], ...] | None = None
    """(OrderItemId, SellerSKU, QuantityOrdered) of each item; None until they are read."""


@dataclass
class SalesCache:
    """The orders of one seller in one marketplace, complete from `start` to `known_through`
    (Unix seconds): every order created in between is here with its items."""

    settle_s: float = SETTLE_S
    orders: dict[str, Order] = field(default_factory=dict)
    start: float | None = None
    listed_through: float = float("-inf")
    """Every order created from `start` to here has been listed (its items may not be read yet)."""
    listed_at: float = float("-inf")
    """When the last complete listing was asked for."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)

    @property
    def known_through(self) -> float:
        """`listed_through`, or just before the first listed order whose items are not read yet."""
        waiting = [
            o.purchased
            for o in self.orders.values()
            if o.items is None and self.start is not None and o.purchased >= self.start
        ]
        return min([self.listed_through, *(p - 1e-3 for p in waiting)])

    def covers(self, since_s: float, known_at: float | None) -> bool:
        if self.start is None or since_s < self.start:
            return False
        return known_at is None or self.known_through >= known_at

    def created_after(self, since_s: float) -> float:
        """Where the next listing starts: where coverage is missing, or just before it ends."""
        if self.start is None or since_s < self.start:
            return since_s
        return self.listed_through - OVERLAP_S

    def listed(self, created_after: float, asked_at: float, orders: Iterable[tuple[str, float, str]]) -> None:
        """A complete listing of the orders created from `created_after`, asked for at `asked_at`."""
        self.merge(orders)
        through = asked_at - self.settle_s
        if self.start is not None and created_after <= self.listed_through:
            self.start = min(self.start, created_after)
            self.listed_through = max(self.listed_through, through)
        else:
            self.start, self.listed_through = created_after, through
        self.listed_at = max(self.listed_at, asked_at)

    def merge(self, orders: Iterable[tuple[str, float, str]]) -> None:
        """Orders seen in a listing, complete or not: new ones wait for their items; a status
        change is kept (a canceled order needs no items)."""
        for order_id, purchased, status in orders:
            known = self.orders.get(order_id)
            if known is None:
                self.orders[order_id] = Order(purchased, status, () if status == CANCELED else None)
            else:
                known.status = status

    def unitemized(self) -> list[str]:
        waiting = [
            (o.purchased, order_id) for order_id, o in self.orders.items() if o.items is None and o.status != CANCELED
        ]
        return [order_id for _, order_id in sorted(waiting)]

    def itemized(self, order_id: str, items: Iterable[tuple[str, str, int]]) -> None:
        if order_id in self.orders:
            self.orders[order_id].items = tuple(items)

    def units(self, sku: str, since_s: float) -> frozenset[str]:
        """An id per unit of `sku` in orders created since `since_s`, canceled ones left out."""
        return frozenset(
            f"{order_id}/{item_id}#{n}"
            for order_id, order in self.orders.items()
            if order.purchased >= since_s and order.status != CANCELED and order.items
            for item_id, item_sku, quantity in order.items
            if item_sku == sku
            for n in range(quantity)
        )

    def prune(self, before: float) -> None:
        """Forget orders created before `before`; coverage starts there at the earliest."""
        self.orders = {k: o for k, o in self.orders.items() if o.purchased >= before}
        if self.start is not None and self.listed_through < before:
            self.start, self.listed_through = None, float("-inf")
        elif self.start is not None:
            self.start = max(self.start, before)


class AmazonShop:
    """One seller on Amazon as the connector sees it (`marketplace.Marketplace`). `listing` holds
    `seller_id`, `sku`, `marketplace_id` and `product_type`. Build one per shop and keep it: its
    sales cache and quota buckets are what make Orders v0 usable."""

    maximum = MAXIMUM
    compare_and_set = False
    idempotent = False

    def __init__(
        self,
        credentials: Credentials,
        client: httpx.AsyncClient,
        *,
        api: str = API,
        auth: str = AUTH,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        settle_s: float = SETTLE_S,
        applied_within_s: float = 20.0,
        skew_s: float = 1.0,
        max_age_s: float | None = None,
        page_size: int = 100,
        quotas: Mapping[str, tuple[float, float]] = QUOTAS,
    ) -> None:
        self.credentials = credentials
        self.client = client
        self.api, self.auth = api.rstrip("/"), auth.rstrip("/")
        self.clock, self.sleep = clock, sleep
        self.settle_s, self.applied_within_s, self.skew_s = settle_s, applied_within_s, skew_s
        self.max_age_s = 1.0 / quotas["getOrders"][0] if max_age_s is None else max_age_s
        """Without `known_at`, the cache is listed again once its last listing is this old."""
        self.page_size = page_size
        self.buckets = {operation: TokenBucket(*rate) for operation, rate in quotas.items()}
        self.caches: dict[str, SalesCache] = {}
        self._token, self._token_expires_at = "", 0.0
        self._token_lock = asyncio.Lock()
        self._updated: dict[tuple[str, str, str], float] = {}
        """The newest `lastUpdatedDate` seen of each listing: a write's change must be newer."""

    def __repr__(self) -> str:  # never the secret or the tokens
        return f"AmazonShop({self.api!r}, {self.credentials!r})"

    # --- listings ------------------------------------------------------------------------------

    async def quantity(self, listing: Mapping[str, str]) -> int:
        item = await self._item(listing)
        availability = item.get("fulfillmentAvailability") or []
        for entry in availability:
            if entry.get("fulfillmentChannelCode") == CHANNEL:
                return int(entry.get("quantity") or 0)
        if availability:  # fulfilled by Amazon: a DEFAULT write would end its FBA enrolment
            channels = ", ".join(str(e.get("fulfillmentChannelCode")) for e in availability)
            raise Refused(f"SKU {listing['sku']} is fulfilled by {channels}, not merchant-fulfilled ({CHANNEL})")
        return 0

    async def set_quantity(
        self, listing: Mapping[str, str], quantity: int, *, seen: int | None = None, key: str | None = None
    ) -> None:
        """An absolute write, returned from once Amazon has applied it (not merely accepted it)."""
        await self._patch(
            listing,
            {
                "op": "merge",
                "path": "/attributes/fulfillment_availability",
                "value": [{"fulfillment_channel_code": CHANNEL, "quantity": quantity}],
            },
        )

    async def _patch(self, listing: Mapping[str, str], patch: Mapping[str, Any]) -> None:
        """One patch of the listing, returned from once applied (a queued one is in doubt)."""
        if _listing_key(listing) not in self._updated:
            await self._item(listing)  # the change the write must be newer than
        before = self._updated.get(_listing_key(listing))
        body = {"productType": listing["product_type"], "patches": [dict(patch)]}
        sent = self.clock()
        await self._pace("patchListingsItem")
        answer = await self._call(
            "patchListingsItem", "PATCH", _item_path(listing), {"marketplaceIds": listing["marketplace_id"]}, body
        )
        errors = [i for i in answer.get("issues") or [] if i.get("severity") == "ERROR"]
        if answer.get("status") != "ACCEPTED" or errors:
            issues = errors or answer.get("issues") or []
            raise Refused(f"{answer.get('status')}: " + "; ".join(_issue(i) for i in issues))
        await self._until_applied(listing, sent - self.skew_s, before, str(answer.get("submissionId", "")))

    async def set_price(self, listing: Mapping[str, str], amount: Decimal, currency: str) -> None:
        """The offer's `our_price` in the listing's marketplace, returned from once applied: a
        quantity written next must not take the price's change for its own."""
        await self._patch(
            listing,
            {
                "op": "replace",
                "path": "/attributes/purchasable_offer",
                "value": [
                    {
                        "marketplace_id": listing["marketplace_id"],
                        "currency": currency,
                        "our_price": [{"schedule": [{"value_with_tax": float(amount)}]}],
                    }
                ],
            },
        )

    async def _until_applied(
        self, listing: Mapping[str, str], after: float, before: float | None, submission: str
    ) -> None:
        """Read the listing back, with growing pauses, until it shows a change at or after
        `after` and newer than `before`; a submission never seen applied is in doubt."""
        deadline, pause = self.clock() + self.applied_within_s, 0.1
        while True:
            try:
                updated = _updated(await self._item(listing), listing["marketplace_id"])
                if updated is not None and updated >= after and (before is None or updated > before):
                    return
            except Throttled as error:
                pause = max(pause, error.retry_after_s)
            except Unavailable:
                pass
            if self.clock() + pause > deadline:
                raise Unavailable(
                    f"submission {submission} for SKU {listing['sku']} accepted but not seen applied "
                    f"within {self.applied_within_s:g} s"
                )
            await self.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    async def _item(self, listing: Mapping[str, str]) -> dict:
        await self._pace("getListingsItem")
        item = await self._call(
            "getListingsItem",
            "GET",
            _item_path(listing),
            {"marketplaceIds": listing["marketplace_id"], "includedData": "summaries,fulfillmentAvailability"},
        )
        updated = _updated(item, listing["marketplace_id"])
        key = _listing_key(listing)
        if updated is not None and updated > self._updated.get(key, float("-inf")):
            self._updated[key] = updated
        return item

    # --- sales ---------------------------------------------------------------------------------

    async def sales_since(
        self, listing: Mapping[str, str], since_s: int, *, known_at: float | None = None
    ) -> frozenset[str]:
        """Units of `listing`'s SKU in orders created since `since_s`, canceled ones left out,
        from the marketplace's sales cache, refreshed first where the quotas allow and a call
        would tell something new. With `known_at`, `NotYet` until the cache holds every order
        made up to then; without it, what the cache holds. One refresh at a time per cache: the
        shop's other listings wait for it and then answer from it."""
        cache = self.caches.setdefault(listing["marketplace_id"], SalesCache(self.settle_s))
        async with cache.lock:
            if known_at is None or not cache.covers(since_s, known_at):
                await self._refresh(cache, listing["marketplace_id"], since_s, known_at)
            if known_at is not None and not cache.covers(since_s, known_at):
                raise NotYet(
                    f"sales of marketplace {listing['marketplace_id']} known through "
                    f"{_iso(cache.known_through)}, not yet through {_iso(known_at)}",
                    self._next_cover_in(cache, since_s, known_at),
                )
            return cache.units(listing["sku"], since_s)

    async def _refresh(self, cache: SalesCache, marketplace_id: str, since_s: float, known_at: float | None) -> None:
        now = self.clock()
        cache.prune(now - RETAIN_S)
        if self._worth_listing(cache, since_s, known_at, now) and self._allowed("getOrders"):
            await self._list_orders(cache, marketplace_id, cache.created_after(since_s))
        await self._itemize(cache)

    def _worth_listing(self, cache: SalesCache, since_s: float, known_at: float | None, now: float) -> bool:
        """Whether a `getOrders` now would answer the question: a call spent on nothing is a
        minute's quota."""
        if cache.start is None or since_s < cache.start:
            return True
        if known_at is not None:
            return cache.listed_through < known_at <= now - self.settle_s
        return now - cache.listed_at >= self.max_age_s

    def _next_cover_in(self, cache: SalesCache, since_s: float, known_at: float) -> float:
        """Seconds until a refresh could cover `known_at`: the next `getOrders` allowed, and
        `known_at` settled; or, when only items are missing, the next `getOrderItems`."""
        now = self.clock()
        if cache.start is None or since_s < cache.start or cache.listed_through < known_at:
            wait = max(self.buckets["getOrders"].wait(now), known_at + self.settle_s - now)
        else:
            wait = self.buckets["getOrderItems"].wait(now)
        return max(wait, 0.1)

    async def _list_orders(self, cache: SalesCache, marketplace_id: str, created_after: float) -> None:
        """One listing, page after page while the quota allows; only a complete one extends the
        cache's coverage."""
        asked_at = self.clock()
        params = {
            "MarketplaceIds": marketplace_id,
            "CreatedAfter": _iso(created_after),
            "MaxResultsPerPage": str(self.page_size),
        }
        found: list[tuple[str, float, str]] = []
        while True:
            self._take("getOrders")
            try:
                payload = (await self._orders_call("getOrders", "/orders/v0/orders", params)).get("payload") or {}
            except Throttled as error:
                self._back_off("getOrders", error.retry_after_s)
                cache.merge(found)
                return
            found += [
                (o["AmazonOrderId"], _seconds(o["PurchaseDate"]), str(o.get("OrderStatus", "")))
                for o in payload.get("Orders") or []
            ]
            token = payload.get("NextToken")
            if not token:
                cache.listed(created_after, asked_at, found)
                return
            if not self._allowed("getOrders"):
                log.info("amazon_orders_listing_cut_short", marketplace_id=marketplace_id, orders=len(found))
                cache.merge(found)
                return
            params = {"MarketplaceIds": marketplace_id, "NextToken": token}

    async def _itemize(self, cache: SalesCache) -> None:
        """The items of orders not seen before, oldest first, while the quota allows."""
        for order_id in cache.unitemized():
            items: list[tuple[str, str, int]] = []
            params: dict[str, str] = {}
            while True:
                if not self._allowed("getOrderItems"):
                    return
                self._take("getOrderItems")
                try:
                    payload = (
                        await self._orders_call(
                            "getOrderItems",
                            f"/orders/v0/orders/{quote(order_id, safe='')}/orderItems",
                            params,
                        )
                    ).get("payload") or {}
                except Throttled as error:
                    self._back_off("getOrderItems", error.retry_after_s)
                    return
                items += [
                    (str(i["OrderItemId"]), str(i.get("SellerSKU", "")), int(i.get("QuantityOrdered") or 0))
                    for i in payload.get("OrderItems") or []
                ]
                if not payload.get("NextToken"):
                    break
                params = {"NextToken": payload["NextToken"]}
            cache.itemized(order_id, items)

    async def _orders_call(self, operation: str, path: str, params: Mapping[str, str]) -> dict:
        """An Orders call: a refusal there is no listing's fault, so it is not `Refused`."""
        try:
            return await self._call(operation, "GET", path, params)
        except Refused as error:
            raise Unavailable(f"{operation}: {error}") from error

    # --- quotas --------------------------------------------------------------------------------

    def _allowed(self, operation: str) -> bool:
        return self.buckets[operation].wait(self.clock()) <= 0

    def _take(self, operation: str) -> None:
        self.buckets[operation].take(self.clock())

    def _back_off(self, operation: str, seconds: float) -> None:
        self.buckets[operation].back_off(self.clock(), seconds)

    async def _pace(self, operation: str) -> None:
        """Wait for the operation's bucket: listing calls are few and short, worth waiting for."""
        bucket = self.buckets[operation]
        while (wait := bucket.wait(self.clock())) > 0:
            await self.sleep(wait)
        bucket.take(self.clock())

    # --- HTTP and tokens -----------------------------------------------------------------------

    async def _call(
        self, operation: str, method: str, path: str, params: Mapping[str, str], body: Mapping[str, Any] | None = None
    ) -> dict:
        for attempt in (1, 2):
            token = await self._access_token()
            try:
                response = await self.client.request(
                    method,
                    self.api + path,
                    params=dict(params),
                    json=body,
                    headers={
                        "x-amz-access-token": token,
                        "accept": "application/json",
                        "user-agent": "Rebound/0.1 (Language=Python)",
                    },
                )
            except httpx.HTTPError as error:
                raise Unavailable(f"{operation}: {type(error).__name__}: {error}") from error
            if response.status_code == 403 and EXPIRED in response.text and attempt == 1:
                await self._fetch_token(stale=token)
                continue
            return self._answer(operation, response)
        raise AssertionError("unreachable")

    def _answer(self, operation: str, response: httpx.Response) -> dict:
        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        errors = body.get("errors") if isinstance(body, dict) else None
        message = "; ".join(_error(e) for e in errors or []) or response.text[:200]
        if status == 429:
            raise Throttled(f"{operation}: {message}", _retry_after(response, 1.0 / self.buckets[operation].rate))
        if status >= 500 or (status < 300 and not isinstance(body, dict)):
            raise Unavailable(f"{operation}: HTTP {status} {message}")
        if status in (401, 403):
            request = response.headers.get("x-amzn-requestid")
            raise Unauthorized(f"{operation}: HTTP {status} {message} (request {request})")
        if status >= 400:
            raise Refused(f"{operation}: HTTP {status} {message}")
        return body

    async def _access_token(self) -> str:
        if not self._token or self._token_expires_at - self.clock() < TOKEN_MARGIN_S:
            await self._fetch_token(stale=self._token)
        return self._token

    async def _fetch_token(self, *, stale: str) -> None:
        """A new access token, unless another caller replaced `stale` meanwhile."""
        async with self._token_lock:
            if self._token != stale and self._token_expires_at - self.clock() >= TOKEN_MARGIN_S:
                return
            c = self.credentials
            asked_at = self.clock()
            try:
                response = await self.client.post(
                    self.auth + "/auth/o2/token",
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": c.refresh_token,
                        "client_id": c.client_id,
                        "client_secret": c.client_secret,
                    },
                )
            except httpx.HTTPError as error:
                raise Unavailable(f"LWA token: {type(error).__name__}: {error}") from error
            grant = _grant(response)
            self._token = str(grant["access_token"])
            self._token_expires_at = asked_at + float(grant.get("expires_in", 3600))
            log.info("amazon_token_fetched", client_id=c.client_id, expires_in=grant.get("expires_in"))


def _grant(response: httpx.Response) -> dict:
    """The answer of Login with Amazon's token endpoint, or the outcome its failure means."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = f"LWA token: HTTP {response.status_code} {body.get('error', '')} {body.get('error_description', '')}"
    if response.status_code == 429:
        raise Throttled(message.strip(), _retry_after(response, 1.0))
    if response.status_code >= 500:
        raise Unavailable(message.strip())
    if response.status_code >= 400 or not body.get("access_token"):
        raise Unauthorized(message.strip())
    return body


def _item_path(listing: Mapping[str, str]) -> str:
    return f"/listings/2021-08-01/items/{quote(listing['seller_id'], safe='')}/{quote(listing['sku'], safe='')}"


def _listing_key(listing: Mapping[str, str]) -> tuple[str, str, str]:
    return listing["seller_id"], listing["sku"], listing["marketplace_id"]


def _updated(item: Mapping[str, Any], marketplace_id: str) -> float | None:
    for summary in item.get("summaries") or []:
        if summary.get("marketplaceId") == marketplace_id and summary.get("lastUpdatedDate"):
            return _seconds(summary["lastUpdatedDate"])
    return None


def _issue(issue: Mapping[str, Any]) -> str:
    return f"{issue.get('code')} {issue.get('message', '')}".strip()


def _error(error: Mapping[str, Any]) -> str:
    details = f" ({error['details']})" if error.get("details") else ""
    return f"{error.get('code')} {error.get('message', '')}{details}".strip()


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(float(response.headers.get("retry-after", default)), 0.0)
    except ValueError:
        return default


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso(seconds: float) -> str:
    """ISO 8601 in UTC, to the second below (a listing that starts earlier misses nothing)."""
    return datetime.fromtimestamp(max(seconds, 0.0), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
