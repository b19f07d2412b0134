"""A local Amazon SP-API, faithful where a connector can go wrong: Login with Amazon access tokens
that expire (403 with Amazon's own body), the Listings Items and Orders v0 request shapes, the
documented quotas as token buckets per seller and operation (429 `QuotaExceeded` beyond them),
and a write that is only queued when `ACCEPTED`: it is applied `accept_delay_s` later, in order
per SKU, and only then does the listing's `lastUpdatedDate` move. Its buyers buy on their own,
never below zero; each sale is an order of one item the connector can read.

Tests and the demo drive it under `/_standin/`: `POST sellers` (`seller_id`, `client_id`,
`client_secret`, `refresh_token`), `POST listings` (`seller_id`, `sku`, `marketplace_id`,
`product_type`, `quantity`), `PUT faults`, `PUT buyers` (`per_s`), `GET state`.

Issue codes of refused submissions are the stand-in's own (Amazon's are numeric, and which one a
given mistake gets is not documented).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp
from starlette.routing import Route

from . import Buyers, Controls, LateAnswers, in_background, late_answers
from ..connectors.amazon import CANCELED, CHANNEL, EXPIRED, MAXIMUM, QUOTAS
from ..connectors.domain import TokenBucket

TOKEN_LIFETIME_S = 3600
ORDERS_SETTLE_S = 120.0
"""`CreatedBefore` must be at least this long before the current time."""
INCLUDED_DATA = {
    "summaries",
    "attributes",
    "issues",
    "offers",
    "fulfillmentAvailability",
    "procurement",
    "relationships",
    "productTypes",
}
PATCH_OPS = {"add", "replace", "merge", "delete"}
DENIED = "Access to requested resource is denied."
INVALID_TOKEN = "The access token you provided is revoked, malformed or invalid."


@dataclass
class Seller:
    seller_id: str
    client_id: str
    client_secret: str
    refresh_token: str


@dataclass
class Listing:
    seller_id: str
    sku: str
    marketplace_id: str
    product_type: str = "PRODUCT"
    quantity: int = 0
    sold: int = 0
    asin: str = ""
    created: float = 0.0
    updated: float = 0.0
    price: tuple[float, str] | None = None  # our_price: value_with_tax, currency


@dataclass
class Submission:
    submission_id: str
    quantity: int | None
    due: float
    price: tuple[float, str] | None = None


@dataclass
class Faults(LateAnswers):
    """Shares of requests answered with each failure, and how writes and tokens behave."""

    rate_limited: float = 0.0
    server_errors: float = 0.0
    expire_tokens: bool = False
    """Every access token issued so far is expired, until the next one is issued."""
    accept_delay_s: float = 0.3
    """How long an accepted submission waits before it is applied."""
    sales_before_write: int = 0
    """The next this many writes of a listing in stock each land just after a buyer bought a unit
    of it (a sale made between a connector's read and its write being applied)."""
    orders_lag_s: float = 0.0
    """How long a new order takes to show in `getOrders`."""


@dataclass
class State:
    sellers: dict[str, Seller] = field(default_factory=dict)
    listings: dict[tuple[str, str], Listing] = field(default_factory=dict)  # by (seller_id, sku)
    orders: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # access token: (seller_id, expires at)
    queues: dict[tuple[str, str], deque[Submission]] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    requests: dict[str, int] = field(default_factory=dict)  # by operation
    writes: int = 0
    grants: int = 0


class AmazonStandIn(Controls):
    Faults = Faults

    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.state = State()
        self.rng = random.Random(seed)
        self.clock = clock
        self._orders = 0
        self.quotas: dict[tuple[str, str], TokenBucket] = {}
        self.buyers = Buyers(self.sell_one, self.rng)
        items = "/listings/2021-08-01/items/{seller_id}/{sku:path}"
        self.app: ASGIApp = Starlette(
            routes=[
                Route("/auth/o2/token", self.grant_token, methods=["POST"]),
                Route(items, self.get_item, methods=["GET"]),
                Route(items, self.patch_item, methods=["PATCH"]),
                Route("/orders/v0/orders", self.get_orders, methods=["GET"]),
                Route("/orders/v0/orders/{order_id}/orderItems", self.get_order_items, methods=["GET"]),
                Route("/_standin/sellers", self.post_seller, methods=["POST"]),
                Route("/_standin/listings", self.post_listing, methods=["POST"]),
                Route("/_standin/faults", self.set_faults, methods=["PUT"]),
                Route("/_standin/buyers", self.set_buyers, methods=["PUT"]),
                Route("/_standin/state", self.show_state, methods=["GET"]),
            ],
            lifespan=self._lifespan,
        )
        self.app = late_answers(self.app, lambda: self.state.faults, self.rng)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Any) -> AsyncIterator[None]:
        async with self.buyers.running(app), in_background(self._applying()):
            yield

    async def _applying(self) -> None:
        """Queued submissions are applied when due, whether or not anyone asks."""
        while True:
            self.apply_due()
            await asyncio.sleep(0.02)

    def add_seller(self, seller_id: str, client_id: str, client_secret: str, refresh_token: str) -> Seller:
        seller = self.state.sellers[seller_id] = Seller(seller_id, client_id, client_secret, refresh_token)
        return seller

    def add_listing(
        self, seller_id: str, sku: str, marketplace_id: str, product_type: str = "PRODUCT", quantity: int = 0
    ) -> Listing:
        now = self.clock()
        listing = Listing(
            seller_id,
            sku,
            marketplace_id,
            product_type,
            quantity,
            asin=f"B0{self.rng.randrange(16**8):08X}",
            created=now,
            updated=now,
        )
        self.state.listings[(seller_id, sku)] = listing
        return listing

    # --- Login with Amazon ---------------------------------------------------------------------

    async def grant_token(self, request: Request) -> Response:
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return _json({"error": "invalid_request", "error_description": "Content-Type is not supported"}, 400)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return _json({"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}, 400)
        sellers = [s for s in self.state.sellers.values() if s.client_id == form.get("client_id")]
        if not sellers or all(s.client_secret != form.get("client_secret") for s in sellers):
            return _json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        seller = next((s for s in sellers if s.refresh_token == form.get("refresh_token")), None)
        if seller is None:
            return _json(
                {
                    "error": "invalid_grant",
                    "error_description": "The request has an invalid grant parameter : refresh_token",
                },
                400,
            )
        token = "Atza|" + secrets.token_urlsafe(32)
        self.state.tokens[token] = (seller.seller_id, self.clock() + TOKEN_LIFETIME_S)
        self.state.faults.expire_tokens = False
        self.state.grants += 1
        return _json(
            {
                "access_token": token,
                "refresh_token": seller.refresh_token,
                "token_type": "bearer",
                "expires_in": TOKEN_LIFETIME_S,
            }
        )

    # --- the SP-API ----------------------------------------------------------------------------

    def _checked(self, request: Request, operation: str) -> tuple[Seller | None, Response | None]:
        """The seller a request is for, or the answer the real API gives to one it refuses."""
        self.state.requests[operation] = self.state.requests.get(operation, 0) + 1
        self.apply_due()
        grant = self.state.tokens.get(request.headers.get("x-amz-access-token", ""))
        if grant is None:
            return None, _errors(403, "Unauthorized", DENIED, INVALID_TOKEN)
        seller_id, expires_at = grant
        if self.state.faults.expire_tokens or expires_at <= self.clock():
            return None, _errors(403, "Unauthorized", DENIED, EXPIRED)
        bucket = self.quotas.setdefault((seller_id, operation), TokenBucket(*QUOTAS[operation]))
        if bucket.wait(self.clock()) > 0 or self.rng.random() < self.state.faults.rate_limited:
            return None, _errors(429, "QuotaExceeded", "You exceeded your quota for the requested resource.")
        bucket.take(self.clock())
        if self.rng.random() < self.state.faults.server_errors:
            return None, _errors(500, "InternalFailure", "We encountered an internal error. Please try again.")
        return self.state.sellers[seller_id], None

    def _listing(self, request: Request, operation: str) -> tuple[Listing | None, Seller | None, Response | None]:
        seller, refusal = self._checked(request, operation)
        if refusal is not None:
            return None, None, refusal
        assert seller is not None
        if request.path_params["seller_id"] != seller.seller_id:
            return None, None, _errors(403, "Unauthorized", DENIED)
        marketplaces = [m for m in request.query_params.get("marketplaceIds", "").split(",") if m]
        if not marketplaces:
            return None, None, _errors(400, "BAD_REQUEST", "Invalid input", "marketplaceIds is required")
        listing = self.state.listings.get((seller.seller_id, request.path_params["sku"]))
        if listing is not None and listing.marketplace_id not in marketplaces:
            listing = None
        return listing, seller, None

    async def get_item(self, request: Request) -> Response:
        listing, _, refusal = self._listing(request, "getListingsItem")
        if refusal is not None:
            return refusal
        included = set(request.query_params.get("includedData", "summaries").split(","))
        if not included <= INCLUDED_DATA:
            return _errors(400, "BAD_REQUEST", "Invalid input", f"includedData: {sorted(included - INCLUDED_DATA)}")
        if listing is None:
            return _errors(
                404,
                "NotFound",
                f"SKU '{request.path_params['sku']}' not found in marketplace {request.query_params['marketplaceIds']}",
            )
        item: dict[str, Any] = {"sku": listing.sku}
        if "summaries" in included:
            status = ["BUYABLE", "DISCOVERABLE"] if listing.quantity else ["DISCOVERABLE"]
            item["summaries"] = [
                {
                    "marketplaceId": listing.marketplace_id,
                    "asin": listing.asin,
                    "productType": listing.product_type,
                    "conditionType": "new_new",
                    "status": status,
                    "itemName": listing.sku,
                    "createdDate": _iso(listing.created),
                    "lastUpdatedDate": _iso(listing.updated),
                }
            ]
        if "fulfillmentAvailability" in included:
            item["fulfillmentAvailability"] = [{"fulfillmentChannelCode": CHANNEL, "quantity": listing.quantity}]
        if "issues" in included:
            item["issues"] = []
        return _json(item, rate="5.0")

    async def patch_item(self, request: Request) -> Response:
        listing, _, refusal = self._listing(request, "patchListingsItem")
        if refusal is not None:
            return refusal
        try:
            body = orjson.loads(await request.body())
            patches = _patches(body)
        except (ValueError, KeyError, TypeError) as error:
            return _errors(400, "BAD_REQUEST", "Invalid input", str(error))
        sku = request.path_params["sku"]
        issues, quantity, price = self._judge(listing, str(body["productType"]), patches)
        preview = request.query_params.get("mode") == "VALIDATION_PREVIEW"
        submission_id = uuid.uuid4().hex
        if not issues and not preview and (quantity is not None or price is not None) and listing is not None:
            due = self.clock() + self.state.faults.accept_delay_s
            self.state.queues.setdefault((listing.seller_id, sku), deque()).append(
                Submission(submission_id, quantity, due, price)
            )
        return _json(
            {
                "sku": sku,
                "status": "INVALID" if issues else ("VALID" if preview else "ACCEPTED"),
                "submissionId": submission_id,
                "issues": issues,
            },
            rate="5.0",
        )

    def _judge(
        self, listing: Listing | None, product_type: str, patches: list[dict[str, Any]]
    ) -> tuple[list[dict], int | None, tuple[float, str] | None]:
        """The issues of a submission (none: it is accepted), and the quantity and price it sets."""
        if listing is None:
            return (
                [_issue("LISTING_NOT_FOUND", "No listing with this SKU in the marketplace. Create it first.", [])],
                None,
                None,
            )
        if product_type != listing.product_type:
            return (
                [
                    _issue(
                        "PRODUCT_TYPE_MISMATCH",
                        f"The product type {product_type} does not match the listing's "
                        f"product type {listing.product_type}.",
                        [],
                    )
                ],
                None,
                None,
            )
        quantity, price = None, None
        for patch in patches:
            if patch["path"] == "/attributes/purchasable_offer":
                offered = _offer_price(patch, listing.marketplace_id)
                if isinstance(offered, dict):
                    return [offered], None, None
                price = offered
                continue
            if patch["path"] != "/attributes/fulfillment_availability":
                continue
            if patch["op"] == "delete" or len(patch.get("value") or []) != 1:
                return (
                    [
                        _issue(
                            "INVALID_FULFILLMENT_AVAILABILITY",
                            "fulfillment_availability takes exactly one value.",
                            ["fulfillment_availability"],
                        )
                    ],
                    None,
                    None,
                )
            value = patch["value"][0]
            given = value.get("quantity")
            if value.get("fulfillment_channel_code") != CHANNEL:
                return (
                    [
                        _issue(
                            "UNSUPPORTED_FULFILLMENT_CHANNEL",
                            f"Only the {CHANNEL} channel is served here.",
                            ["fulfillment_availability"],
                        )
                    ],
                    None,
                    None,
                )
            if not isinstance(given, int) or isinstance(given, bool) or not 0 <= given <= MAXIMUM:
                return (
                    [
                        _issue(
                            "INVALID_QUANTITY",
                            f"The quantity must be a whole number from 0 to {MAXIMUM}.",
                            ["fulfillment_availability"],
                        )
                    ],
                    None,
                    None,
                )
            quantity = given
        return [], quantity, price

    def apply_due(self) -> None:
        """Apply every submission whose time has come, in order per SKU."""
        now = self.clock()
        for (seller_id, sku), queue in self.state.queues.items():
            while queue and queue[0].due <= now:
                submission = queue.popleft()
                listing = self.state.listings.get((seller_id, sku))
                if listing is None:
                    continue
                listing.updated = self.clock()
                if submission.price is not None:
                    listing.price = submission.price
                if submission.quantity is None:
                    continue
                if self.state.faults.sales_before_write > 0 and self.sell_one(listing) is not None:
                    self.state.faults.sales_before_write -= 1
                listing.quantity = submission.quantity
                self.state.writes += 1

    async def get_orders(self, request: Request) -> Response:
        seller, refusal = self._checked(request, "getOrders")
        if refusal is not None:
            return refusal
        assert seller is not None
        query = request.query_params
        try:
            search = _decode(query["NextToken"]) if "NextToken" in query else self._search(query)
        except (ValueError, KeyError, TypeError) as error:
            return _errors(400, "InvalidInput", str(error) or "Invalid input")
        if not query.get("MarketplaceIds"):
            return _errors(400, "InvalidInput", "Missing required parameter: MarketplaceIds")
        until = self.clock() - self.state.faults.orders_lag_s
        if search["before"] is not None:
            until = min(until, search["before"])
        matching = [
            o
            for o in self.state.orders
            if o["seller_id"] == seller.seller_id
            and o["MarketplaceId"] in search["marketplaces"]
            and search["after"] <= o["purchased"] <= until
        ]
        start, size = search.get("offset", 0), search["size"]
        payload: dict[str, Any] = {
            "Orders": [_order(o) for o in matching[start : start + size]],
            "CreatedBefore": _iso(until, millis=False),
        }
        if start + size < len(matching):
            payload["NextToken"] = _encode({**search, "offset": start + size})
        return _json({"payload": payload}, rate="0.0167")

    def _search(self, query: Any) -> dict[str, Any]:
        """The filter of a first `getOrders` page; later pages carry it in their `NextToken`."""
        if "CreatedAfter" not in query:
            raise ValueError("Either CreatedAfter or LastUpdatedAfter is required")
        after = _seconds(query["CreatedAfter"])
        before = _seconds(query["CreatedBefore"]) if "CreatedBefore" in query else None
        if before is not None and before > self.clock() - ORDERS_SETTLE_S:
            raise ValueError("CreatedBefore must be at least two minutes before the current time")
        size = int(query.get("MaxResultsPerPage", 100))
        if not 1 <= size <= 100:
            raise ValueError("MaxResultsPerPage must be between 1 and 100")
        return {
            "marketplaces": query.get("MarketplaceIds", "").split(","),
            "after": after,
            "before": before,
            "size": size,
        }

    async def get_order_items(self, request: Request) -> Response:
        seller, refusal = self._checked(request, "getOrderItems")
        if refusal is not None:
            return refusal
        assert seller is not None
        order_id = request.path_params["order_id"]
        order = next(
            (o for o in self.state.orders if o["AmazonOrderId"] == order_id and o["seller_id"] == seller.seller_id),
            None,
        )
        if order is None:
            return _errors(404, "InvalidInput", f"Invalid AmazonOrderId: {order_id}")
        return _json({"payload": {"AmazonOrderId": order_id, "OrderItems": order["items"]}}, rate="0.5")

    # --- buyers --------------------------------------------------------------------------------

    def sell_one(self, listing: Listing | None = None) -> Listing | None:
        """A buyer buys one unit of `listing`, or of any listing that has one; the sale is an order."""
        available = [x for x in ([listing] if listing else self.state.listings.values()) if x.quantity > 0]
        if not available:
            return None
        listing = self.rng.choice(available)
        listing.quantity -= 1
        listing.sold += 1
        self._orders += 1
        now = self.clock()
        order_id = f"11{self._orders % 10}-{self._orders:07d}-{self.rng.randrange(10**7):07d}"
        self.state.orders.append(
            {
                "seller_id": listing.seller_id,
                "AmazonOrderId": order_id,
                "purchased": now,
                "updated": now,
                "OrderStatus": "Unshipped",
                "MarketplaceId": listing.marketplace_id,
                "items": [
                    {
                        "ASIN": listing.asin,
                        "SellerSKU": listing.sku,
                        "OrderItemId": f"{self.rng.randrange(10**14):014d}",
                        "Title": listing.sku,
                        "QuantityOrdered": 1,
                        "QuantityShipped": 0,
                    }
                ],
            }
        )
        return listing

    def cancel(self, order_id: str) -> None:
        """The order is canceled; its units go back to the listing."""
        for order in self.state.orders:
            if order["AmazonOrderId"] == order_id and order["OrderStatus"] != CANCELED:
                order["OrderStatus"], order["updated"] = CANCELED, self.clock()
                for item in order["items"]:
                    listing = self.state.listings.get((order["seller_id"], item["SellerSKU"]))
                    if listing is not None:
                        listing.quantity += item["QuantityOrdered"]
                        listing.sold -= item["QuantityOrdered"]

    # --- what a test or the demo tells it ------------------------------------------------------

    async def post_seller(self, request: Request) -> Response:
        self.add_seller(**orjson.loads(await request.body()))
        return Response(status_code=204)

    async def post_listing(self, request: Request) -> Response:
        given = orjson.loads(await request.body())
        if given.get("seller_id") not in self.state.sellers:
            return _json({"error": "no such seller"}, 404)
        self.add_listing(**given)
        return Response(status_code=204)

    async def show_state(self, _request: Request) -> Response:
        self.apply_due()
        state = self.state
        return _json(
            {
                "sellers": sorted(state.sellers),
                "listings": [asdict(x) for x in state.listings.values()],
                "orders": len(state.orders),
                "queued": sum(len(q) for q in state.queues.values()),
                "faults": asdict(state.faults),
                "buyers_per_s": self.buyers.per_s,
                "requests": state.requests,
                "writes": state.writes,
                "grants": state.grants,
            }
        )


def _patches(body: Any) -> list[dict[str, Any]]:
    """The patches of a `ListingsItemPatchRequest`, checked against its schema."""
    if not isinstance(body, dict) or not isinstance(body.get("productType"), str):
        raise ValueError("productType is required")
    patches = body.get("patches")
    if not isinstance(patches, list) or not patches:
        raise ValueError("patches must hold at least one operation")
    for patch in patches:
        if not isinstance(patch, dict) or patch.get("op") not in PATCH_OPS or not isinstance(patch.get("path"), str):
            raise ValueError("each patch needs an op (add, replace, merge, delete) and a path")
        value = patch.get("value")
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            raise ValueError(f"{patch['path']}: value must be an array of objects")
    return patches


def _issue(code: str, message: str, attributes: list[str]) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "severity": "ERROR",
        "attributeNames": attributes,
        "categories": ["INVALID_ATTRIBUTE"] if attributes else [],
    }


def _order(order: dict[str, Any]) -> dict[str, Any]:
    units = sum(i["QuantityOrdered"] for i in order["items"])
    return {
        "AmazonOrderId": order["AmazonOrderId"],
        "PurchaseDate": _iso(order["purchased"], millis=False),
        "LastUpdateDate": _iso(order["updated"], millis=False),
        "OrderStatus": order["OrderStatus"],
        "FulfillmentChannel": "MFN",
        "MarketplaceId": order["MarketplaceId"],
        "OrderType": "StandardOrder",
        "NumberOfItemsShipped": 0,
        "NumberOfItemsUnshipped": units,
    }


def _errors(status: int, code: str, message: str, details: str = "") -> Response:
    """Amazon's error envelope; no rate-limit header on a 429, as on Amazon."""
    return _json({"errors": [{"code": code, "message": message, "details": details}]}, status)


def _json(body: Any, status: int = 200, *, rate: str | None = None) -> Response:
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    if rate is not None:
        headers["x-amzn-RateLimit-Limit"] = rate
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _encode(search: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(search)).decode()


def _decode(token: str) -> dict[str, Any]:
    search = orjson.loads(base64.urlsafe_b64decode(token.encode()))
    if not isinstance(search, dict):
        raise ValueError("Invalid NextToken")
    return search


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _iso(seconds: float, *, millis: bool = True) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    if millis:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _offer_price(patch: dict[str, Any], marketplace_id: str) -> tuple[float, str] | dict:
    """The `our_price` a `purchasable_offer` patch sets, or the issue that refuses it."""

    def refused(message: str) -> dict:
        return _issue("INVALID_PURCHASABLE_OFFER", message, ["purchasable_offer"])

    if patch["op"] not in ("replace", "merge") or len(patch.get("value") or []) != 1:
        return refused("purchasable_offer takes exactly one value, replaced or merged.")
    offer = patch["value"][0]
    if offer.get("marketplace_id") != marketplace_id:
        return refused(f"The offer is for marketplace {offer.get('marketplace_id')}, not {marketplace_id}.")
    try:
        [price] = offer["our_price"]
        [entry] = price["schedule"]
        value = entry["value_with_tax"]
    except (KeyError, TypeError, ValueError):
        return refused("our_price needs one schedule entry with value_with_tax.")
    currency = offer.get("currency")
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value <= 0
        or not isinstance(currency, str)
        or len(currency) != 3
    ):
        return refused("value_with_tax must be a positive number and currency a three-letter code.")
    return float(value), currency
