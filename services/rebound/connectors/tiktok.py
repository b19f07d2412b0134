"""TikTok Shop (Open API 202309): a listing's quantity per warehouse, read, written and sold.

Every shop call is signed: the query parameters but `sign` and `access_token`, sorted by key and
joined as key+value, behind the request path and before the body's exact bytes, wrapped in the
app secret on both sides, HMAC-SHA256 keyed with the app secret, lower-case hex. The access token
travels in `x-tts-access-token`. Every answer is `{code, message, request_id, data}`, and `code: 0`
can still carry per-SKU failures in `data.errors`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx
import orjson
import structlog

from .marketplace import Paused, Refused, Throttled, Unauthorized, Unavailable

log = structlog.get_logger(__name__)

API = "https://open-api.tiktokglobalshop.com"
AUTH = "https://auth.tiktok-shops.com"
MAXIMUM = 99_999

RATE_LIMITED = 36009002
TOKEN_EXPIRED, TOKEN_INVALID = 105002, 105001
REFRESH_BEFORE_S = 300
"""An access token this close to its expiry is refreshed before the next call."""
SHOP_PROBLEMS = {
    106001: "invalid signature",
    105001: "invalid token",
    105005: "missing scope",
    36009004: "authorization",
    36009033: "IP not allowed",
    36004001: "refresh token expired",
}
"""Codes that say the shop cannot be written at all (credentials, app set-up): not a listing's fault."""
PAUSED = {12052003}
"""Per-warehouse codes that say the product is held back (its status does not let it sell): the
listing is `paused`, not refused for good."""
UNPAID, CANCELLED = "UNPAID", "CANCELLED"


def sign(app_secret: str, path: str, query: Mapping[str, str], body: bytes = b"") -> str:
    """The `sign` query parameter of a request to `path` with `query` and `body`."""
    joined = "".join(f"{key}{value}" for key, value in sorted(query.items()) if key not in ("sign", "access_token"))
    message = app_secret.encode() + path.encode() + joined.encode() + body + app_secret.encode()
    return hmac.new(app_secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """One authorised shop of one app. Both tokens rotate on refresh: store them together."""

    app_key: str
    app_secret: str
    shop_cipher: str
    access_token: str
    refresh_token: str
    access_token_expire_in: int = 0
    """When the access token expires, Unix seconds (TikTok's `*_expire_in` are absolute)."""

    def __repr__(self) -> str:  # never the secret or the tokens, in a log or a traceback
        return f"Credentials(app_key={self.app_key!r}, shop_cipher={self.shop_cipher!r})"


class TikTokShop:
    """A TikTok shop as the connector sees it (`marketplace.Marketplace`). `on_refresh` stores
    the rotated tokens before they are used. `renew`, when given, is called instead of `refresh`
    when the token expires or is about to: the connector's replicas share a shop's tokens, and a
    refresh token works once, so `renew` lets one replica refresh and the others take its tokens
    (it is given the access token that expired: a caller that finds another one stored takes it)."""

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
        on_refresh: Callable[[Credentials], Awaitable[None]] | None = None,
        renew: Callable[[TikTokShop, str], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.credentials = credentials
        self.client = client
        self.api, self.auth = api.rstrip("/"), auth.rstrip("/")
        self.on_refresh = on_refresh
        self.renew = renew
        self.clock = clock

    async def quantity(self, listing: Mapping[str, str]) -> int:
        data = await self._call("/product/202309/inventory/search", {"sku_ids": [listing["sku_id"]]})
        for product in data.get("inventory", []):
            for sku in product.get("skus", []):
                if sku.get("id") != listing["sku_id"]:
                    continue
                for stock in sku.get("warehouse_inventory", []):
                    if stock.get("warehouse_id") == listing["warehouse_id"]:
                        return int(stock.get("available_quantity", 0))
        raise Refused(f"SKU {listing['sku_id']} has no stock record in warehouse {listing['warehouse_id']}")

    async def set_quantity(
        self, listing: Mapping[str, str], quantity: int, *, seen: int | None = None, key: str | None = None
    ) -> None:
        """An absolute write: TikTok Shop takes neither the number it replaces nor a key."""
        body = {
            "skus": [
                {
                    "id": listing["sku_id"],
                    "inventory": [{"warehouse_id": listing["warehouse_id"], "quantity": quantity}],
                }
            ]
        }
        data = await self._call(f"/product/202309/products/{listing['product_id']}/inventory/update", body)
        if errors := data.get("errors"):
            held = any(
                e.get("code") in PAUSED for error in errors for e in (error.get("detail") or {}).get("extra_errors", [])
            )
            raise (Paused if held else Refused)("; ".join(_describe(error) for error in errors))

    async def set_price(self, listing: Mapping[str, str], amount: Decimal, currency: str) -> None:
        """The SKU's price, in every warehouse (Update Price 202309)."""
        body = {"skus": [{"id": listing["sku_id"], "price": {"amount": str(amount), "currency": currency}}]}
        data = await self._call(f"/product/202309/products/{listing['product_id']}/prices/update", body)
        if errors := data.get("errors"):
            raise Refused("; ".join(_describe(error) for error in errors))

    async def sales_since(
        self, listing: Mapping[str, str], since_s: int, *, known_at: float | None = None
    ) -> frozenset[str]:
        """Line items of `listing`'s SKU in orders created since `since_s`, cancelled and unpaid
        ones left out. A line item is one unit."""
        sold: set[str] = set()
        token = ""
        while True:
            query = {"page_size": "100", "sort_field": "create_time", "sort_order": "ASC"}
            if token:
                query["page_token"] = token
            data = await self._call("/order/202309/orders/search", {"create_time_ge": since_s}, query)
            for order in data.get("orders", []):
                if order.get("status") in (UNPAID, CANCELLED):
                    continue
                sold |= {
                    f"{order.get('id')}/{item.get('id')}"
                    for item in order.get("line_items", [])
                    if item.get("sku_id") == listing["sku_id"]
                }
            token = data.get("next_page_token") or ""
            if not token:
                return frozenset(sold)

    async def _call(self, path: str, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> dict:
        expires = self.credentials.access_token_expire_in
        if expires and expires - self.clock() < REFRESH_BEFORE_S:
            await self._renew(self.credentials.access_token)
        for attempt in (1, 2):
            used = self.credentials.access_token
            answer = await self._send(path, body, extra)
            # Invalid: another replica may have refreshed the shop's tokens since this one read them.
            if answer.get("code") not in (TOKEN_EXPIRED, TOKEN_INVALID) or attempt == 2:
                return self._data(path, answer)
            await self._renew(used)
        raise AssertionError("unreachable")

    async def _renew(self, expired: str) -> None:
        if self.renew is not None:
            await self.renew(self, expired)
        elif self.credentials.access_token == expired:
            await self.refresh()

    async def _send(self, path: str, body: Mapping[str, Any], extra: Mapping[str, str] | None) -> dict:
        c = self.credentials
        raw = orjson.dumps(body)
        query = {
            "app_key": c.app_key,
            "timestamp": str(int(self.clock())),
            "shop_cipher": c.shop_cipher,
            **(extra or {}),
        }
        query["sign"] = sign(c.app_secret, path, query, raw)
        try:
            response = await self.client.post(
                self.api + path,
                params=query,
                content=raw,
                headers={"content-type": "application/json", "x-tts-access-token": c.access_token},
            )
        except httpx.HTTPError as error:
            raise Unavailable(f"{path}: {type(error).__name__}: {error}") from error
        return self._envelope(path, response)

    def _envelope(self, path: str, response: httpx.Response) -> dict:
        try:
            answer = response.json()
        except ValueError:
            answer = None
        code = answer.get("code") if isinstance(answer, dict) else None
        message = answer.get("message", "") if isinstance(answer, dict) else response.text[:200]
        if response.status_code == 429 or code == RATE_LIMITED:
            raise Throttled(f"{path}: {code} {message}", _retry_after(response))
        if response.status_code >= 500 or not isinstance(answer, dict):
            raise Unavailable(f"{path}: HTTP {response.status_code} {message}")
        return answer

    @staticmethod
    def _data(path: str, answer: dict) -> dict:
        code, message = answer.get("code"), answer.get("message", "")
        if code == 0:
            return answer.get("data") or {}
        if code in SHOP_PROBLEMS or code == TOKEN_EXPIRED:
            raise Unauthorized(f"{path}: {code} {message} (request {answer.get('request_id')})")
        raise Refused(f"{path}: {code} {message}")

    async def refresh(self) -> None:
        """New access and refresh tokens (both rotate), stored through `on_refresh` first."""
        fresh = await self.fetch_tokens()
        if self.on_refresh is not None:
            await self.on_refresh(fresh)
        self.credentials = fresh

    async def fetch_tokens(self) -> Credentials:
        """The shop's credentials with new tokens; the refresh token used is spent from then on."""
        c = self.credentials
        try:
            response = await self.client.get(
                self.auth + "/api/v2/token/refresh",
                params={
                    "app_key": c.app_key,
                    "app_secret": c.app_secret,
                    "refresh_token": c.refresh_token,
                    "grant_type": "refresh_token",
                },
            )
        except httpx.HTTPError as error:
            raise Unavailable(f"token refresh: {type(error).__name__}: {error}") from error
        data = self._data("token refresh", self._envelope("token refresh", response))
        fresh = replace(
            c,
            access_token=data["access_token"],
            refresh_token=data["refresh_token"],
            access_token_expire_in=int(data.get("access_token_expire_in", 0)),
        )
        log.info("tiktok_token_refreshed", shop_cipher=c.shop_cipher, expires_at=fresh.access_token_expire_in)
        return fresh


def _describe(error: Mapping[str, Any]) -> str:
    detail = error.get("detail") or {}
    parts = [f"{error.get('code')} {error.get('message', '')}".strip()]
    parts += [
        f"warehouse {e.get('warehouse_id')}: {e.get('code')} {e.get('message', '')}".strip()
        for e in detail.get("extra_errors", [])
    ]
    return ", ".join(parts)


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("retry-after", "1")), 0.0)
    except ValueError:
        return 1.0


def response_body(
    data: Mapping[str, Any] | None = None, *, code: int = 0, message: str = "Success", request_id: str = ""
) -> dict:
    """The envelope every answer has (the stand-in answers in it too)."""
    return {"code": code, "message": message, "request_id": request_id, "data": dict(data or {})}
