"""A local TikTok Shop, faithful where a connector can go wrong: it checks what the real one checks
(the signature over the exact bytes, the timestamp window, the access token and its expiry, the
request's shape), answers in its envelope, and can be told to fail as the real one does (429 with
code 36009002, 5xx, `code: 0` with per-SKU errors, tokens that expire mid-run). Its buyers buy on
their own, never below zero, and each sale becomes an order the connector can read.

Operators of a test or the demo drive it under `/_standin/` (listings, faults, buyers, state).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp
from starlette.routing import Route

from . import Buyers, Controls, LateAnswers, late_answers
from ..connectors.tiktok import MAXIMUM, RATE_LIMITED, TOKEN_EXPIRED, response_body, sign

TIMESTAMP_BEHIND_S, TIMESTAMP_AHEAD_S = 300, 30
INVALID_SIGNATURE, INVALID_TOKEN, INVALID_TIMESTAMP, BAD_REQUEST = 106001, 105001, 36009004, 12019001
SKU_NOT_FOUND, SKU_ERRORS = 12052048, 12052990
CURRENCIES = frozenset({"USD", "GBP", "EUR", "MXN", "BRL", "JPY", "IDR", "MYR", "PHP", "SGD", "THB", "VND"})
"""The currencies of the markets TikTok Shop sells in."""


@dataclass
class Shop:
    app_key: str
    app_secret: str
    shop_cipher: str
    access_token: str
    refresh_token: str
    access_token_expire_in: int


@dataclass
class Stock:
    product_id: str
    sku_id: str
    warehouse_id: str
    quantity: int = 0
    sold: int = 0


@dataclass
class Faults(LateAnswers):
    """Shares of requests answered with each failure, and whether tokens expire now."""

    rate_limited: float = 0.0
    server_errors: float = 0.0
    sku_errors: float = 0.0
    expire_tokens: bool = False
    sales_before_write: int = 0
    """The next this many writes of a listing in stock each land just after a buyer bought a unit
    of it (a sale made between a connector's read and its write)."""


@dataclass
class State:
    shops: dict[str, Shop] = field(default_factory=dict)  # by shop_cipher
    stock: dict[tuple[str, str], Stock] = field(default_factory=dict)  # by (sku_id, warehouse_id)
    orders: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)
    requests: dict[str, int] = field(default_factory=dict)
    writes: int = 0
    prices: dict[str, tuple[str, str]] = field(default_factory=dict)  # by sku_id: (amount, currency)


def _answer(data: dict | None = None, *, code: int = 0, message: str = "Success", status: int = 200) -> Response:
    body = response_body(data, code=code, message=message, request_id=secrets.token_hex(12).upper())
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


class TikTokStandIn(Controls):
    Faults = Faults

    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.state = State()
        self.rng = random.Random(seed)
        self.clock = clock
        self._orders = 0
        self.buyers = Buyers(self.sell_one, self.rng)
        self.app: ASGIApp = Starlette(
            routes=[
                Route(
                    "/product/202309/products/{product_id}/inventory/update", self.update_inventory, methods=["POST"]
                ),
                Route("/product/202309/products/{product_id}/prices/update", self.update_prices, methods=["POST"]),
                Route("/product/202309/inventory/search", self.search_inventory, methods=["POST"]),
                Route("/order/202309/orders/search", self.search_orders, methods=["POST"]),
                Route("/api/v2/token/refresh", self.refresh_token, methods=["GET"]),
                Route("/_standin/shops", self.add_shop, methods=["POST"]),
                Route("/_standin/listings", self.add_listing, methods=["POST"]),
                Route("/_standin/faults", self.set_faults, methods=["PUT"]),
                Route("/_standin/buyers", self.set_buyers, methods=["PUT"]),
                Route("/_standin/state", self.show_state, methods=["GET"]),
            ],
            lifespan=self.buyers.running,
        )
        self.app = late_answers(self.app, lambda: self.state.faults, self.rng)

    # --- the marketplace's API ---------------------------------------------------------------

    async def _checked(self, request: Request) -> tuple[Shop | None, bytes, Response | None]:
        """The shop a signed request is for, or the answer the real API gives to a bad one."""
        self.state.requests[request.url.path] = self.state.requests.get(request.url.path, 0) + 1
        raw = await request.body()
        query = dict(request.query_params)
        shop = self.state.shops.get(query.get("shop_cipher", ""))
        if shop is None or query.get("app_key") != shop.app_key:
            return None, raw, _answer(code=INVALID_TOKEN, message="invalid shop_cipher or app_key", status=401)
        if sign(shop.app_secret, request.url.path, query, raw) != query.get("sign"):
            return None, raw, _answer(code=INVALID_SIGNATURE, message="invalid signature", status=401)
        try:
            skew = int(query.get("timestamp", "")) - self.clock()
        except ValueError:
            skew = float("inf")
        if not -TIMESTAMP_BEHIND_S <= skew <= TIMESTAMP_AHEAD_S:
            return None, raw, _answer(code=INVALID_TIMESTAMP, message="timestamp is out of the allowed window")
        if request.headers.get("x-tts-access-token") != shop.access_token:
            return None, raw, _answer(code=INVALID_TOKEN, message="access token is invalid")
        if self.state.faults.expire_tokens or shop.access_token_expire_in <= self.clock():
            return None, raw, _answer(code=TOKEN_EXPIRED, message="access token is expired, please refresh it")
        faults = self.state.faults
        if self.rng.random() < faults.rate_limited:
            return (
                None,
                raw,
                _answer(
                    code=RATE_LIMITED,
                    status=429,
                    message=("Too many requests. You've made too many requests in a short period of time."),
                ),
            )
        if self.rng.random() < faults.server_errors:
            return None, raw, Response("upstream unavailable", status_code=503)
        return shop, raw, None

    async def update_inventory(self, request: Request) -> Response:
        shop, raw, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        try:
            skus = orjson.loads(raw)["skus"]
            writes = [(str(s["id"]), str(i["warehouse_id"]), int(i["quantity"])) for s in skus for i in s["inventory"]]
        except (ValueError, KeyError, TypeError):
            return _answer(code=BAD_REQUEST, message="invalid request body")
        errors = []
        for sku_id, warehouse_id, quantity in writes:
            stock = self.state.stock.get((sku_id, warehouse_id))
            if stock is None or stock.product_id != request.path_params["product_id"]:
                problem = (SKU_NOT_FOUND, "The warehouse does not exist")
            elif not 0 <= quantity <= MAXIMUM:
                problem = (BAD_REQUEST, f"quantity must be between 0 and {MAXIMUM}")
            elif self.rng.random() < self.state.faults.sku_errors:
                problem = (12052003, "The current product status can not be actiavted")
            else:
                if self.state.faults.sales_before_write > 0 and self.sell_one(stock) is not None:
                    self.state.faults.sales_before_write -= 1
                stock.quantity = quantity
                self.state.writes += 1
                continue
            errors.append(
                {
                    "code": SKU_ERRORS,
                    "message": "batch update inventory error",
                    "detail": {
                        "sku_id": sku_id,
                        "extra_errors": [{"code": problem[0], "message": problem[1], "warehouse_id": warehouse_id}],
                    },
                }
            )
        return _answer({"errors": errors} if errors else {})

    async def update_prices(self, request: Request) -> Response:
        """A SKU's price: `amount` a decimal string above zero, in a currency TikTok Shop sells in."""
        shop, raw, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        try:
            prices = [
                (str(s["id"]), str(s["price"]["amount"]), str(s["price"]["currency"]))
                for s in orjson.loads(raw)["skus"]
            ]
            if not all(Decimal(amount) > 0 and currency in CURRENCIES for _, amount, currency in prices):
                raise ValueError("price")
        except (ValueError, KeyError, TypeError, ArithmeticError):
            return _answer(code=BAD_REQUEST, message="invalid request body: skus[].price needs amount and currency")
        product = request.path_params["product_id"]
        errors = []
        for sku_id, amount, currency in prices:
            if not any(s.sku_id == sku_id and s.product_id == product for s in self.state.stock.values()):
                errors.append(
                    {
                        "code": SKU_NOT_FOUND,
                        "message": f"sku {sku_id} is not a sku of product {product}",
                        "detail": {"sku_id": sku_id},
                    }
                )
                continue
            self.state.prices[sku_id] = (amount, currency)
        return _answer({"errors": errors} if errors else {})

    async def search_inventory(self, request: Request) -> Response:
        shop, raw, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        try:
            wanted = set(map(str, orjson.loads(raw).get("sku_ids") or []))
        except (ValueError, AttributeError):
            return _answer(code=BAD_REQUEST, message="invalid request body")
        products: dict[str, dict[str, dict]] = {}
        for stock in self.state.stock.values():
            if stock.sku_id not in wanted:
                continue
            sku = products.setdefault(stock.product_id, {}).setdefault(
                stock.sku_id,
                {
                    "id": stock.sku_id,
                    "seller_sku": stock.sku_id,
                    "total_available_quantity": 0,
                    "total_committed_quantity": 0,
                    "warehouse_inventory": [],
                },
            )
            sku["total_available_quantity"] += stock.quantity
            sku["warehouse_inventory"].append(
                {"warehouse_id": stock.warehouse_id, "available_quantity": stock.quantity, "committed_quantity": 0}
            )
        return _answer({"inventory": [{"product_id": p, "skus": list(skus.values())} for p, skus in products.items()]})

    async def search_orders(self, request: Request) -> Response:
        shop, raw, refusal = await self._checked(request)
        if refusal is not None:
            return refusal
        try:
            since = int(orjson.loads(raw).get("create_time_ge", 0))
            size = int(request.query_params["page_size"])
            start = int(request.query_params.get("page_token") or 0)
        except (ValueError, KeyError, AttributeError):
            return _answer(code=BAD_REQUEST, message="page_size is required; create_time_ge is Unix seconds")
        if not 1 <= size <= 100:
            return _answer(code=BAD_REQUEST, message="page_size must be between 1 and 100")
        matching = [o for o in self.state.orders if o["create_time"] >= since]
        page = matching[start : start + size]
        more = start + size < len(matching)
        return _answer(
            {"orders": page, "total_count": len(matching), "next_page_token": str(start + size) if more else ""}
        )

    async def refresh_token(self, request: Request) -> Response:
        query = request.query_params
        for shop in self.state.shops.values():
            if (query.get("app_key"), query.get("app_secret"), query.get("refresh_token")) == (
                shop.app_key,
                shop.app_secret,
                shop.refresh_token,
            ) and query.get("grant_type") == "refresh_token":
                shop.access_token, shop.refresh_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
                shop.access_token_expire_in = int(self.clock()) + 7 * 86_400
                self.state.faults.expire_tokens = False
                return _answer(
                    {
                        "access_token": shop.access_token,
                        "refresh_token": shop.refresh_token,
                        "access_token_expire_in": shop.access_token_expire_in,
                        "refresh_token_expire_in": int(self.clock()) + 365 * 86_400,
                        "open_id": shop.shop_cipher,
                        "seller_name": shop.shop_cipher,
                    },
                    message="success",
                )
        return _answer(code=36004001, message="rt has expired")

    # --- buyers ------------------------------------------------------------------------------

    def sell_one(self, stock: Stock | None = None) -> Stock | None:
        """A buyer buys one unit of `stock`, or of any listing that has one; the sale is an order."""
        available = [s for s in ([stock] if stock else self.state.stock.values()) if s.quantity > 0]
        if not available:
            return None
        stock = self.rng.choice(available)
        stock.quantity -= 1
        stock.sold += 1
        self._orders += 1
        now = int(self.clock())
        self.state.orders.append(
            {
                "id": f"{5779_0000_0000_0000 + self._orders}",
                "status": "AWAITING_SHIPMENT",
                "create_time": now,
                "warehouse_id": stock.warehouse_id,
                "update_time": now,
                "line_items": [
                    {
                        "id": f"{self._orders}-1",
                        "sku_id": stock.sku_id,
                        "seller_sku": stock.sku_id,
                        "product_id": stock.product_id,
                    }
                ],
            }
        )
        return stock

    # --- what a test or the demo tells it ----------------------------------------------------

    async def add_shop(self, request: Request) -> Response:
        shop = Shop(**orjson.loads(await request.body()))
        self.state.shops[shop.shop_cipher] = shop
        return Response(status_code=204)

    async def add_listing(self, request: Request) -> Response:
        stock = Stock(**orjson.loads(await request.body()))
        self.state.stock[(stock.sku_id, stock.warehouse_id)] = stock
        return Response(status_code=204)

    async def show_state(self, _request: Request) -> Response:
        state = self.state
        return Response(
            orjson.dumps(
                {
                    "stock": [asdict(s) for s in state.stock.values()],
                    "orders": len(state.orders),
                    "faults": asdict(state.faults),
                    "buyers_per_s": self.buyers.per_s,
                    "requests": state.requests,
                    "writes": state.writes,
                }
            ),
            media_type="application/json",
        )
