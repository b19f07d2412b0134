"""A local eBay, faithful where a connector can go wrong: it checks what the real one checks (the
bearer token its token endpoint issued, its expiry and scopes, a request's shape: at most 25
requests a bulk call, SKUs and offers that exist and belong together, no negative quantity),
answers in eBay's error envelope `{"errors":[{errorId, domain, category, message, longMessage,
parameters}]}` with a result per offer (207 when any failed), refuses a listing's 251st revision
of a Pacific calendar day, and keeps each seller to eBay's daily call quotas (Inventory API
2,000,000, Fulfillment API 100,000, a day from Pacific midnight), answering 429 beyond them. It
can be told to fail as the real one does (429, 5xx, per-listing errors, tokens that expire
mid-run). Its buyers buy on their own, never below zero, one unit an order.

One offer per SKU (eBay offers a SKU on one marketplace; an auction beside a fixed-price offer is
not modelled). Operators of a test or the demo drive it under `/_standin/`: `POST sellers`,
`POST listings`, `POST orders/{orderId}/cancel`, `PUT faults`, `PUT buyers`, `GET state`.
"""

from __future__ import annotations

import base64
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlencode

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp
from starlette.routing import Route

from . import Buyers, Controls, LateAnswers, late_answers
from ..connectors.ebay import (
    CANNOT_REVISE,
    FULFILLMENT,
    INVALID_TOKEN,
    INVENTORY,
    RATE_LIMITED,
    REVISIONS_A_DAY,
    SCOPES,
    START_IN_FUTURE,
    TOKEN,
    revision_day,
)

SCOPE = "https://api.ebay.com/oauth/api_scope/"
READ_INVENTORY = (SCOPE + "sell.inventory", SCOPE + "sell.inventory.readonly")
WRITE_INVENTORY = (SCOPE + "sell.inventory",)
READ_ORDERS = (SCOPE + "sell.fulfillment", SCOPE + "sell.fulfillment.readonly")
DAILY_CALLS = {"inventory": 2_000_000, "fulfillment": 100_000}
TOKEN_LIFETIME_S = 7_200
ORDERS_WINDOW_S = 90 * 86_400
MOST_REQUESTS = 25

ACCESS_DENIED, USER_ERROR, INVALID_QUANTITY, ON_HOLD = 1100, 25002, 25004, 25097
SKU_NOT_FOUND, INVALID_VALUE, OFFER_NOT_AVAILABLE, INVENTORY_SYSTEM_ERROR = 25702, 25709, 25713, 25001
INVALID_FILTER, INVALID_DATE, START_MISSING, START_TOO_EARLY = 30700, 30810, 30820, 30830
INVALID_OFFSET, INVALID_LIMIT, FULFILLMENT_SYSTEM_ERROR = 31000, 31100, 30500


@dataclass
class Token:
    expires_at: float
    scopes: tuple[str, ...]


@dataclass
class Seller:
    name: str
    client_id: str
    client_secret: str
    refresh_token: str
    access_token: str = ""
    access_token_expires_at: float = 0.0
    scopes: list[str] = field(default_factory=lambda: list(SCOPES))
    """The scopes the seller consented to: a token refresh may ask for these or fewer."""
    daily_calls: dict[str, int] = field(default_factory=lambda: dict(DAILY_CALLS))
    tokens: dict[str, Token] = field(default_factory=dict)
    calls: dict[tuple[str, date], int] = field(default_factory=dict)
    orders: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Listing:
    """An inventory item (`quantity`, ship-to-home) with its one published offer (`available`)."""

    seller: str
    sku: str
    offer_id: str
    quantity: int = 0
    available: int | None = None
    """The offer's `availableQuantity`; None: as `quantity` when the listing is added."""
    marketplace_id: str = "EBAY_US"
    listing_id: str = ""
    sold: int = 0
    price: tuple[str, str] | None = None  # the offer's price: value, currency

    @property
    def buyable(self) -> int:
        """What the listing shows: the smaller of the two quantities."""
        return min(self.quantity, self.quantity if self.available is None else self.available)

    def take(self, units: int) -> None:
        """Buyers took `units` (negative: a cancellation gave them back): both quantities move."""
        self.quantity -= units
        if self.available is not None:
            self.available -= units
        self.sold += units


@dataclass
class Faults(LateAnswers):
    """Shares of requests answered with each failure, and whether the tokens issued so far expire now."""

    rate_limited: float = 0.0
    retry_after_s: float | None = None
    """Sent as Retry-After with a 429 from `rate_limited` (eBay documents none)."""
    server_errors: float = 0.0
    listing_errors: float = 0.0
    """Share of a bulk update's offers refused with 25097 (a listing on hold)."""
    expire_tokens: bool = False
    sales_before_write: int = 0
    """The next this many writes of a listing in stock each land just after a buyer bought a unit
    of it (a sale made between a connector's read and its write)."""


@dataclass
class State:
    sellers: dict[str, Seller] = field(default_factory=dict)
    listings: dict[tuple[str, str], Listing] = field(default_factory=dict)  # by (seller, sku)
    offers: dict[str, tuple[str, str]] = field(default_factory=dict)  # offer_id -> (seller, sku)
    revisions: dict[tuple[str, date], int] = field(default_factory=dict)  # by (offer_id, Pacific day)
    faults: Faults = field(default_factory=Faults)
    requests: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    refreshes: int = 0
    unauthorized: int = 0
    revisions_refused: int = 0
    history: list[tuple[float, str, int, int, int | None]] = field(default_factory=list)
    """Every revision: when, the offer, what buyers could buy and had bought before it, what it wrote."""


def error(
    error_id: int,
    message: str,
    *,
    domain: str = "API_INVENTORY",
    category: str = "REQUEST",
    long_message: str | None = None,
    parameters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One error of eBay's envelope."""
    found: dict[str, Any] = {"errorId": error_id, "domain": domain, "category": category, "message": message}
    if domain == "API_INVENTORY":
        found["subdomain"] = "Selling"
    if long_message:
        found["longMessage"] = long_message
    if parameters:
        found["parameters"] = [{"name": k, "value": v} for k, v in parameters.items()]
    return found


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _errors(status: int, *errors: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return _json({"errors": list(errors)}, status, headers)


INVALID_TOKEN_ANSWER = (
    401,
    error(
        INVALID_TOKEN,
        "Invalid access token",
        domain="OAuth",
        long_message=("Invalid access token. Check the value of the Authorization HTTP request header."),
    ),
)
ACCESS_DENIED_ANSWER = (
    403,
    error(
        ACCESS_DENIED, "Access denied", domain="ACCESS", long_message="Insufficient permissions to fulfill the request."
    ),
)
RATE_LIMITED_ANSWER = (
    429,
    error(
        RATE_LIMITED,
        "Too many requests.",
        domain="ACCESS",
        long_message="The request limit has been reached for the resource.",
    ),
)


NOBODY = Seller("", "", "", "")
"""Who a request without a valid token is from."""


def _stamp(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(at * 1000) % 1000:03d}Z"


class EbayStandIn(Controls):
    Faults = Faults

    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.state = State()
        self.rng = random.Random(seed)
        self.clock = clock
        self._sales = 0
        self.buyers = Buyers(self.sell_one, self.rng)
        self.app: ASGIApp = Starlette(
            routes=[
                Route(TOKEN, self.issue_token, methods=["POST"]),
                Route(INVENTORY + "/inventory_item/{sku:path}", self.get_inventory_item, methods=["GET"]),
                Route(INVENTORY + "/offer/{offer_id}", self.get_offer, methods=["GET"]),
                Route(INVENTORY + "/bulk_update_price_quantity", self.bulk_update_price_quantity, methods=["POST"]),
                Route(FULFILLMENT + "/order", self.get_orders, methods=["GET"]),
                Route("/_standin/sellers", self.add_seller_route, methods=["POST"]),
                Route("/_standin/listings", self.add_listing_route, methods=["POST"]),
                Route("/_standin/orders/{order_id}/cancel", self.cancel_route, methods=["POST"]),
                Route("/_standin/faults", self.set_faults, methods=["PUT"]),
                Route("/_standin/buyers", self.set_buyers, methods=["PUT"]),
                Route("/_standin/state", self.show_state, methods=["GET"]),
            ],
            lifespan=self.buyers.running,
        )
        self.app = late_answers(self.app, lambda: self.state.faults, self.rng)

    # --- OAuth ---------------------------------------------------------------------------------

    async def issue_token(self, request: Request) -> Response:
        """The refresh-token grant: HTTP Basic client credentials, a form body; a new access token,
        the refresh token unchanged (it does not rotate)."""
        seller = self._client(request.headers.get("authorization", ""))
        if seller is None:
            return _json({"error": "invalid_client", "error_description": "client authentication failed"}, 401)
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
        if form.get("grant_type") != "refresh_token":
            return _json(
                {
                    "error": "unsupported_grant_type",
                    "error_description": ("grant type in request is not supported by the authorization server"),
                },
                400,
            )
        if form.get("refresh_token") != seller.refresh_token:
            return _json(
                {
                    "error": "invalid_grant",
                    "error_description": (
                        "the provided authorization refresh token is invalid or was issued to another client"
                    ),
                },
                400,
            )
        scopes = tuple((form.get("scope") or " ".join(seller.scopes)).split())
        if not set(scopes) <= set(seller.scopes):
            return _json(
                {
                    "error": "invalid_scope",
                    "error_description": (
                        "The requested scope is invalid, unknown, malformed, or exceeds the scope granted to the client"
                    ),
                },
                400,
            )
        token = f"v^1.1#i^1#p^3#r^1#t^{secrets.token_urlsafe(32)}"
        seller.tokens[token] = Token(self.clock() + TOKEN_LIFETIME_S, scopes)
        self.state.refreshes += 1
        return _json({"access_token": token, "expires_in": TOKEN_LIFETIME_S, "token_type": "User Access Token"})

    def _client(self, header: str) -> Seller | None:
        try:
            client_id, secret = base64.b64decode(header.removeprefix("Basic ")).decode().split(":", 1)
        except (ValueError, UnicodeDecodeError):
            return None
        return next(
            (s for s in self.state.sellers.values() if (s.client_id, s.client_secret) == (client_id, secret)), None
        )

    def _authorised(self, request: Request, api: str, scopes: tuple[str, ...]) -> tuple[Seller, Response | None]:
        """The seller whose token the request carries, or the answer the real API gives instead."""
        path = request.url.path
        self.state.requests[path] = self.state.requests.get(path, 0) + 1
        now = self.clock()
        if self.state.faults.expire_tokens:
            self._expire_tokens(now)
        holder = self._bearer(request.headers.get("authorization", ""))
        if holder is None or holder[1].expires_at <= now:
            self.state.unauthorized += 1
            return NOBODY, _errors(*INVALID_TOKEN_ANSWER)
        seller, token = holder
        if not set(scopes) & set(token.scopes):
            return seller, _errors(*ACCESS_DENIED_ANSWER)
        faults, day = self.state.faults, revision_day(now)
        used = seller.calls.get((api, day), 0)
        if used >= seller.daily_calls.get(api, DAILY_CALLS[api]):
            return seller, _errors(*RATE_LIMITED_ANSWER)
        if self.rng.random() < faults.rate_limited:
            retry = {"retry-after": f"{faults.retry_after_s:g}"} if faults.retry_after_s is not None else None
            return seller, _errors(*RATE_LIMITED_ANSWER, headers=retry)
        seller.calls[(api, day)] = used + 1
        if self.rng.random() < faults.server_errors:
            if api == "fulfillment":
                return seller, _errors(
                    500,
                    error(FULFILLMENT_SYSTEM_ERROR, "System error", domain="API_FULFILLMENT", category="APPLICATION"),
                )
            return seller, _errors(
                500, error(INVENTORY_SYSTEM_ERROR, "A system error has occurred.", category="APPLICATION")
            )
        return seller, None

    def _bearer(self, header: str) -> tuple[Seller, Token] | None:
        bearer = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        return next(((s, s.tokens[bearer]) for s in self.state.sellers.values() if bearer in s.tokens), None)

    def _expire_tokens(self, now: float) -> None:
        """Every token issued so far expires now (the `expire_tokens` fault, applied once)."""
        self.state.faults.expire_tokens = False
        for seller in self.state.sellers.values():
            for token in seller.tokens.values():
                token.expires_at = min(token.expires_at, now)

    # --- Inventory API ---------------------------------------------------------------------------

    async def get_inventory_item(self, request: Request) -> Response:
        seller, refusal = self._authorised(request, "inventory", READ_INVENTORY)
        if refusal is not None:
            return refusal
        sku = request.path_params["sku"]
        listing = self.state.listings.get((seller.name, sku))
        if listing is None:
            return _errors(404, error(SKU_NOT_FOUND, f"{sku} could not be found or is not available in the system."))
        return _json(
            {
                "sku": sku,
                "locale": "en_US",
                "condition": "USED_EXCELLENT",
                "product": {"title": f"Returned unit {sku}"},
                "availability": {"shipToLocationAvailability": {"quantity": listing.quantity}},
            }
        )

    async def get_offer(self, request: Request) -> Response:
        seller, refusal = self._authorised(request, "inventory", READ_INVENTORY)
        if refusal is not None:
            return refusal
        offer_id = request.path_params["offer_id"]
        listing = self._offer(seller, offer_id)
        if listing is None:
            return _errors(404, error(OFFER_NOT_AVAILABLE, f"This Offer is not available : {offer_id}."))
        return _json(
            {
                "offerId": offer_id,
                "sku": listing.sku,
                "marketplaceId": listing.marketplace_id,
                "format": "FIXED_PRICE",
                "availableQuantity": listing.available,
                "status": "PUBLISHED",
                "listing": {"listingId": listing.listing_id, "listingStatus": "ACTIVE", "soldQuantity": listing.sold},
                "pricingSummary": {"price": {"value": "24.99", "currency": "USD"}},
            }
        )

    def _offer(self, seller: Seller, offer_id: str) -> Listing | None:
        owner, sku = self.state.offers.get(offer_id, ("", ""))
        return self.state.listings.get((owner, sku)) if owner == seller.name else None

    async def bulk_update_price_quantity(self, request: Request) -> Response:
        seller, refusal = self._authorised(request, "inventory", WRITE_INVENTORY)
        if refusal is not None:
            return refusal
        try:
            requests = orjson.loads(await request.body())["requests"]
        except (ValueError, KeyError, TypeError):
            requests = None
        if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
            return _errors(400, error(USER_ERROR, "A user error has occurred. The request body is not valid."))
        if not 1 <= len(requests) <= MOST_REQUESTS:
            return _errors(
                400,
                error(
                    INVALID_VALUE,
                    f"Invalid value for requests. Between 1 and {MOST_REQUESTS}.",
                    parameters={"fieldName": "requests"},
                ),
            )
        results = [result for entry in requests for result in self._update(seller, entry)]
        return _json({"responses": results}, 200 if all(r["statusCode"] == 200 for r in results) else 207)

    def _update(self, seller: Seller, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """The results of one request of a bulk update: one per offer (or one for the SKU alone),
        all applied or none (a refused part fails the request's other results too)."""
        sku = entry.get("sku")
        offers = entry.get("offers") or []
        if sku is None and offers:
            sku = self.state.offers.get(str(offers[0].get("offerId")), ("", ""))[1]
        listing = self.state.listings.get((seller.name, str(sku)))
        problems = self._problems(seller, listing, str(sku), entry, offers)
        ids: list[str | None] = [str(o.get("offerId")) for o in offers] or [None]
        if not problems and listing is not None:
            problems = self._revise(listing, entry, offers)
        results = []
        for offer_id in ids:
            found = problems.get(offer_id) or problems.get(None) or next(iter(problems.values()), None)
            result: dict[str, Any] = {"statusCode": 400 if found else 200, "sku": sku}
            if offer_id is not None:
                result["offerId"] = offer_id
            if found:
                result["errors"] = [found]
            results.append(result)
        return results

    def _problems(
        self, seller: Seller, listing: Listing | None, sku: str, entry: dict[str, Any], offers: list[dict[str, Any]]
    ) -> dict[str | None, dict[str, Any]]:
        """What eBay refuses in one request, by offer id (None: the whole request)."""
        if listing is None:
            return {None: error(SKU_NOT_FOUND, f"{sku} could not be found or is not available in the system.")}
        problems: dict[str | None, dict[str, Any]] = {}
        shipped = entry.get("shipToLocationAvailability")
        if shipped is not None and not _quantity((shipped or {}).get("quantity")):
            problems[None] = error(
                INVALID_QUANTITY,
                "Invalid quantity. The quantity must be 0 or more.",
                parameters={"fieldName": "shipToLocationAvailability.quantity"},
            )
        seen: set[str] = set()
        for offer in offers:
            offer_id = str(offer.get("offerId"))
            if self._offer(seller, offer_id) is None:
                problems[offer_id] = error(OFFER_NOT_AVAILABLE, f"This Offer is not available : {offer_id}.")
            elif offer_id != listing.offer_id or offer_id in seen:
                problems[offer_id] = error(
                    USER_ERROR,
                    f"A user error has occurred. Offer {offer_id} is not associated with SKU {sku} or is given twice.",
                )
            elif "availableQuantity" in offer and not _quantity(offer["availableQuantity"]):
                problems[offer_id] = error(
                    INVALID_QUANTITY,
                    "Invalid quantity. The quantity must be 0 or more.",
                    parameters={"fieldName": "availableQuantity"},
                )
            elif "price" in offer and not _price(offer["price"], CURRENCIES.get(listing.marketplace_id, "USD")):
                problems[offer_id] = error(
                    INVALID_VALUE,
                    "Invalid value for price: a value above 0 in the marketplace's currency.",
                    parameters={"fieldName": "price"},
                )
            elif self.rng.random() < self.state.faults.listing_errors:
                problems[offer_id] = error(
                    ON_HOLD,
                    "This listing is on hold due to a policy violation, and "
                    "revisions are not possible. Please check your email for more "
                    "information.",
                )
            seen.add(offer_id)
        return problems

    def _revise(
        self, listing: Listing, entry: dict[str, Any], offers: list[dict[str, Any]]
    ) -> dict[str | None, dict[str, Any]]:
        """One revision of the listing, unless it has had its day's."""
        day = revision_day(self.clock())
        done = self.state.revisions.get((listing.offer_id, day), 0)
        if done >= REVISIONS_A_DAY:
            self.state.revisions_refused += 1
            return {
                None: error(
                    CANNOT_REVISE,
                    "Cannot revise listing.",
                    parameters={
                        "0": (
                            f"This listing has been revised {REVISIONS_A_DAY} times today, the most allowed "
                            "in a calendar day. You can revise it again tomorrow."
                        )
                    },
                )
            }
        quantities = "shipToLocationAvailability" in entry or any("availableQuantity" in o for o in offers)
        if quantities and self.state.faults.sales_before_write > 0 and self.sell_one(listing) is not None:
            self.state.faults.sales_before_write -= 1
        self.state.history.append(
            (
                self.clock(),
                listing.offer_id,
                listing.buyable,
                listing.sold,
                entry.get("shipToLocationAvailability", {}).get("quantity"),
            )
        )
        if "shipToLocationAvailability" in entry:
            listing.quantity = int(entry["shipToLocationAvailability"]["quantity"])
        for offer in offers:
            if "availableQuantity" in offer:
                listing.available = int(offer["availableQuantity"])
            if "price" in offer:
                listing.price = (str(offer["price"]["value"]), str(offer["price"]["currency"]))
        self.state.revisions[(listing.offer_id, day)] = done + 1
        self.state.writes += quantities
        return {}

    # --- Fulfillment API -------------------------------------------------------------------------

    async def get_orders(self, request: Request) -> Response:
        seller, refusal = self._authorised(request, "fulfillment", READ_ORDERS)
        if refusal is not None:
            return refusal
        query = request.query_params
        window = _window(query.get("filter", ""), self.clock())
        if isinstance(window, Response):
            return window
        try:
            limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        except ValueError:
            return _fulfillment_error(INVALID_LIMIT, f"Invalid limit: {query.get('limit')}")
        if not 1 <= limit <= 1000:
            return _fulfillment_error(INVALID_LIMIT, f"Invalid limit: {limit}")
        if offset < 0:
            return _fulfillment_error(INVALID_OFFSET, f"Invalid offset: {offset}")
        start, end = window
        matching = [order for at, order in seller.orders if start <= at <= end]
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?"
        answer: dict[str, Any] = {
            "href": str(request.url),
            "total": len(matching),
            "limit": limit,
            "offset": offset,
            "orders": matching[offset : offset + limit],
        }
        if offset + limit < len(matching):
            answer["next"] = base + urlencode({"filter": query["filter"], "limit": limit, "offset": offset + limit})
        if offset > 0:
            answer["prev"] = base + urlencode(
                {"filter": query["filter"], "limit": limit, "offset": max(offset - limit, 0)}
            )
        return _json(answer)

    # --- buyers ------------------------------------------------------------------------------

    def sell_one(self, listing: Listing | None = None) -> Listing | None:
        """A buyer buys one unit of `listing`, or of any listing that has one: both its quantities
        go down by one, and the sale is an order of one line item."""
        candidates = [lst for lst in ([listing] if listing else self.state.listings.values()) if lst.buyable > 0]
        if not candidates:
            return None
        listing = self.rng.choice(candidates)
        listing.take(1)
        self._sales += 1
        at = self.clock()
        n = self._sales
        order_id = f"{10 + n // 100_000 % 90:02d}-{n % 100_000:05d}-{self.rng.randrange(100_000):05d}"
        self.state.sellers[listing.seller].orders.append(
            (
                at,
                {
                    "orderId": order_id,
                    "legacyOrderId": f"{listing.listing_id}-{3_000_000_000_000 + n}",
                    "creationDate": _stamp(at),
                    "lastModifiedDate": _stamp(at),
                    "orderFulfillmentStatus": "NOT_STARTED",
                    "orderPaymentStatus": "PAID",
                    "sellerId": listing.seller,
                    "cancelStatus": {"cancelState": "NONE_REQUESTED", "cancelRequests": []},
                    "lineItems": [
                        {
                            "lineItemId": str(10_000_000_000 + n),
                            "legacyItemId": listing.listing_id,
                            "sku": listing.sku,
                            "quantity": 1,
                            "title": f"Returned unit {listing.sku}",
                            "soldFormat": "FIXED_PRICE",
                            "listingMarketplaceId": listing.marketplace_id,
                            "purchaseMarketplaceId": listing.marketplace_id,
                            "lineItemFulfillmentStatus": "NOT_STARTED",
                        }
                    ],
                },
            )
        )
        return listing

    def cancel(self, order_id: str) -> bool:
        """The order is cancelled and its units go back on their listings."""
        for seller in self.state.sellers.values():
            for _, order in seller.orders:
                if order["orderId"] != order_id or order["cancelStatus"]["cancelState"] == "CANCELED":
                    continue
                now = _stamp(self.clock())
                order["cancelStatus"] = {"cancelState": "CANCELED", "cancelledDate": now, "cancelRequests": []}
                order["lastModifiedDate"] = now
                for item in order["lineItems"]:
                    listing = self.state.listings.get((seller.name, item["sku"]))
                    if listing is not None:
                        listing.take(-item["quantity"])
                return True
        return False

    # --- what a test or the demo tells it ----------------------------------------------------

    def add_seller(self, seller: Seller) -> Seller:
        """A seller and the access token it starts with (its consented scopes, its expiry)."""
        if seller.access_token:
            seller.tokens[seller.access_token] = Token(seller.access_token_expires_at, tuple(seller.scopes))
        self.state.sellers[seller.name] = seller
        return seller

    def add_listing(self, listing: Listing) -> Listing:
        if listing.available is None:
            listing.available = listing.quantity
        listing.listing_id = listing.listing_id or str(110_000_000_000 + len(self.state.listings))
        self.state.listings[(listing.seller, listing.sku)] = listing
        self.state.offers[listing.offer_id] = (listing.seller, listing.sku)
        return listing

    async def add_seller_route(self, request: Request) -> Response:
        self.add_seller(Seller(**orjson.loads(await request.body())))
        return Response(status_code=204)

    async def add_listing_route(self, request: Request) -> Response:
        given = orjson.loads(await request.body())
        if given.get("seller") not in self.state.sellers:
            return _json({"error": "no such seller"}, 404)
        self.add_listing(Listing(**given))
        return Response(status_code=204)

    async def cancel_route(self, request: Request) -> Response:
        return Response(status_code=204 if self.cancel(request.path_params["order_id"]) else 404)

    async def show_state(self, _request: Request) -> Response:
        state, day = self.state, revision_day(self.clock())
        return _json(
            {
                "listings": [
                    {**asdict(lst), "revisions_today": state.revisions.get((lst.offer_id, day), 0)}
                    for lst in state.listings.values()
                ],
                "sellers": [
                    {
                        "name": s.name,
                        "client_id": s.client_id,
                        "orders": len(s.orders),
                        "calls_today": {api: s.calls.get((api, day), 0) for api in DAILY_CALLS},
                    }
                    for s in state.sellers.values()
                ],
                "faults": asdict(state.faults),
                "buyers_per_s": self.buyers.per_s,
                "requests": state.requests,
                "writes": state.writes,
                "refreshes": state.refreshes,
                "unauthorized": state.unauthorized,
                "revisions_refused": state.revisions_refused,
            }
        )


def _quantity(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _fulfillment_error(error_id: int, message: str) -> Response:
    return _errors(400, error(error_id, message, domain="API_FULFILLMENT"))


def _window(given: str, now: float) -> tuple[float, float] | Response:
    """The `creationdate:[start..end]` filter's times, or the Fulfillment API's refusal."""
    name, _, value = given.partition(":")
    if name != "creationdate":
        return _fulfillment_error(INVALID_FILTER, f"Invalid filter name: {name}")
    start_text, _, end_text = value.removeprefix("[").removesuffix("]").partition("..")
    if not start_text:
        return _fulfillment_error(START_MISSING, "Start date is missing")
    try:
        start = datetime.fromisoformat(start_text).timestamp()
        end = datetime.fromisoformat(end_text).timestamp() if end_text else now
    except ValueError:
        return _fulfillment_error(INVALID_DATE, "Invalid date format")
    if start > now or end > now + 1:
        return _fulfillment_error(START_IN_FUTURE, "Start and end dates can't be in the future")
    if start < now - ORDERS_WINDOW_S:
        return _fulfillment_error(START_TOO_EARLY, "Start date must be within 90 days of end date and current date.")
    return start, end


CURRENCIES = {"EBAY_US": "USD", "EBAY_GB": "GBP", "EBAY_DE": "EUR", "EBAY_AU": "AUD", "EBAY_CA": "CAD"}


def _price(given: Any, currency: str) -> bool:
    """An `Amount`: `value` a decimal string above zero, in the marketplace's `currency`."""
    try:
        return isinstance(given, dict) and given.get("currency") == currency and Decimal(str(given["value"])) > 0
    except (KeyError, ArithmeticError, ValueError):
        return False
