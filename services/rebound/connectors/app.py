"""The storefront connectors as a FastStream app: `storefront.stock-adjustments.v1` is read with
read_committed and kept per listing key; the sync loop applies each key's adjustments to its
marketplace and answers on `storefront.acks.v1`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import structlog
from faststream import FastStream

from rebound_contracts.topics import LISTINGS, STOCK_ADJUSTMENTS

from ..connections import database_connect_kwargs
from ..db import create_pool
from ..messaging.processor import Route
from ..service import Periodic, ServiceSpec, build_app
from ..settings import Settings
from .adapters import PostgresConnectorRepository
from .domain import ConnectorRepository, Listing
from .handlers import keep_adjustment, keep_listing_request
from .marketplace import Marketplace
from .sync import Syncer
from .shopify import VERSION as SHOPIFY_VERSION
from .shopify import ShopifyShop
from .amazon import API as AMAZON_API
from .amazon import AUTH as AMAZON_AUTH
from .amazon import SETTLE_S as AMAZON_SETTLE_S
from .amazon import AmazonShop
from .amazon import Credentials as AmazonCredentials
from .ebay import API as EBAY_API
from .ebay import Credentials as EbayCredentials
from .ebay import EbayShop, RevisionPacing
from .tiktok import API, AUTH, Credentials, TikTokShop

log = structlog.get_logger(__name__)

TOKEN_LOCKS = 0x5EB0_0C01  # advisory lock space of shops renewing their tokens
SYNC_EVERY_S = 0.25
"""Rounds of syncing start at most this often: one runs as soon as a batch brings adjustments or
listing requests, or a key's sync ends (another key of its shop may go), else every
SYNC_IDLE_S (a key waiting out a back-off)."""
SYNC_IDLE_S = 2.0
SYNC_CONCURRENCY = 16
RECONCILE_ROUND_S = 5.0
"""How often the connectors look for listings due a comparison (`REBOUND_RECONCILE_EVERY_S`)."""
"""Keys synced at once; each holds a database connection of the connectors' own pool."""
RATES = {"tiktok": (10.0, 10.0), "shopify": (10.0, 40.0), "amazon": (5.0, 10.0), "ebay": (5.0, 5.0)}
"""Requests a second and burst per shop, by marketplace (TikTok Shop documents none: a cautious 10;
Shopify's GraphQL bucket restores 100 points a second on a Standard plan, and no call of the
adapter costs more than 10; eBay publishes daily quotas only). The Amazon adapter holds each
operation's own quota besides."""
AMAZON_APPLIED_WITHIN_S = 20.0
"""How long an Amazon write may stay queued before the connector takes it as in doubt."""
Shop = tuple[str, str, str]
"""(seller_id, channel, shop_id)"""


class Shops:
    """The marketplace of each connected shop, built from its row and kept while the row does not
    change (a refresh stores new tokens, which builds it again with them)."""

    def __init__(self, pool: asyncpg.Pool, client: httpx.AsyncClient) -> None:
        self.pool, self.client = pool, client
        self._built: dict[tuple[str, str, str], tuple[Any, Marketplace]] = {}
        self._pacing: dict[tuple[str, str, str], RevisionPacing] = {}
        self._builders: dict[str, Callable[[Shop, Mapping[str, Any], Mapping[str, Any]], Marketplace]] = {
            "tiktok": self._tiktok,
            "shopify": self._shopify,
            "amazon": self._amazon,
            "ebay": self._ebay,
        }

    def _tiktok(self, shop: Shop, settings: Mapping[str, Any], tokens: Mapping[str, Any]) -> Marketplace:
        return TikTokShop(
            _tiktok_credentials(settings, tokens),
            self.client,
            api=settings.get("api", API),
            auth=settings.get("auth", AUTH),
            on_refresh=lambda fresh: self._store(shop, _tokens(fresh)),
            renew=lambda market, expired: self._renew(shop, market, expired),
        )

    def _shopify(self, _shop: Shop, settings: Mapping[str, Any], _tokens_row: Mapping[str, Any]) -> Marketplace:
        return ShopifyShop(
            settings["shop_url"],
            _secret(settings["access_token_file"]),
            self.client,
            version=settings.get("version", SHOPIFY_VERSION),
        )

    def _amazon(self, _shop: Shop, settings: Mapping[str, Any], _tokens_row: Mapping[str, Any]) -> Marketplace:
        """Its access tokens live an hour and stay in memory: the adapter, with its sales cache,
        is built once per shop and kept."""
        return AmazonShop(
            AmazonCredentials(
                settings["client_id"], _secret(settings["client_secret_file"]), _secret(settings["refresh_token_file"])
            ),
            self.client,
            api=settings.get("api", AMAZON_API),
            auth=settings.get("auth", AMAZON_AUTH),
            settle_s=float(settings.get("settle_s", AMAZON_SETTLE_S)),
            applied_within_s=float(settings.get("applied_within_s", AMAZON_APPLIED_WITHIN_S)),
        )

    def _ebay(self, shop: Shop, settings: Mapping[str, Any], tokens: Mapping[str, Any]) -> Marketplace:
        """The shop's revision pacing outlives the adapter, rebuilt when a refresh stores a token."""
        credentials = EbayCredentials(
            client_id=settings["client_id"],
            client_secret=_secret(settings["client_secret_file"]),
            access_token=tokens.get("access_token", ""),
            refresh_token=tokens.get("refresh_token", ""),
            access_token_expires_at=float(tokens.get("access_token_expire_in", 0)),
        )
        return EbayShop(
            credentials,
            self.client,
            api=settings.get("api", EBAY_API),
            pacing=self._pacing.setdefault(shop, RevisionPacing()),
            on_refresh=lambda fresh: self._store(
                shop, tokens_document(fresh.access_token, fresh.refresh_token, int(fresh.access_token_expires_at))
            ),
        )

    async def __call__(self, repo: ConnectorRepository, listing: Listing) -> Marketplace | None:
        shop = (listing.seller_id, listing.channel, listing.shop_id)
        row = await repo.shop(*shop)
        if row is None:
            return None
        built = self._built.get(shop)
        if built is not None and built[0] == row:
            return built[1]
        settings, tokens = row
        build = self._builders.get(listing.channel)
        if build is None:
            log.warning("no_adapter", channel=listing.channel, shop_id=listing.shop_id)
            return None
        market = build(shop, settings, tokens or {})
        self._built[shop] = (row, market)
        return market

    async def _renew(self, shop: Shop, market: TikTokShop, expired: str) -> None:
        """One caller at a time, whatever the replica: whoever comes second finds other tokens
        than the `expired` ones stored and takes them (the refresh token is spent already)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", TOKEN_LOCKS, ":".join(shop))
            repo = PostgresConnectorRepository(conn)
            row = await repo.shop(*shop)
            stored = (row[1] or {}) if row is not None else {}
            if row is not None and stored.get("access_token") not in (None, "", expired):
                market.credentials = _tiktok_credentials(row[0], stored, market.credentials.app_secret)
                return
            fresh = await market.fetch_tokens()
            await repo.store_tokens(*shop, _tokens(fresh))
        market.credentials = fresh

    async def _store(self, shop: Shop, tokens: Mapping[str, Any]) -> None:
        async with self.pool.acquire() as conn:
            await PostgresConnectorRepository(conn).store_tokens(*shop, tokens)


def _tokens(credentials: Credentials) -> dict[str, Any]:
    return tokens_document(credentials.access_token, credentials.refresh_token, credentials.access_token_expire_in)


def _secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def _tiktok_credentials(
    settings: Mapping[str, Any], tokens: Mapping[str, Any], app_secret: str | None = None
) -> Credentials:
    return Credentials(
        app_key=settings["app_key"],
        shop_cipher=settings["shop_cipher"],
        app_secret=app_secret or _secret(settings["app_secret_file"]),
        access_token=tokens.get("access_token", ""),
        refresh_token=tokens.get("refresh_token", ""),
        access_token_expire_in=int(tokens.get("access_token_expire_in", 0)),
    )


def spec() -> ServiceSpec:
    syncers: dict[int, Syncer] = {}  # built on the first round, when the pool exists
    work = asyncio.Event()  # set when there may be keys to sync

    async def syncer_of(pool: asyncpg.Pool, settings: Settings, producer: str) -> Syncer:
        syncer = syncers.get(id(pool))
        if syncer is None:
            # A pool of its own: each key in flight holds a connection (its lock) through its
            # marketplace calls, which must not keep the batch consumer from the database.
            # Two more than the keys in flight: a key renewing its shop's tokens takes a second
            # one; one more for the reconciliation.
            own = await create_pool(
                settings.database_url,
                min_size=1,
                max_size=SYNC_CONCURRENCY + 3,
                connect_kwargs=database_connect_kwargs(settings),
            )
            client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
            syncer = syncers[id(pool)] = Syncer(own, producer, Shops(own, client), rate=RATES, landed=work.set)
        return syncer

    async def sync_round(pool: asyncpg.Pool, settings: Settings, producer: str) -> int:
        return await (await syncer_of(pool, settings, producer)).round(concurrency=SYNC_CONCURRENCY, wait=False)

    async def reconcile_round(pool: asyncpg.Pool, settings: Settings, producer: str) -> int:
        return await (await syncer_of(pool, settings, producer)).reconcile(settings.reconcile_every_s)

    return ServiceSpec(
        name="connectors",
        routes=(
            Route(STOCK_ADJUSTMENTS, keep_adjustment, PostgresConnectorRepository),
            Route(LISTINGS, keep_listing_request, PostgresConnectorRepository),
        ),
        periodic=(
            Periodic("storefront-sync", SYNC_IDLE_S, sync_round, wake=work, at_most_every_s=SYNC_EVERY_S),
            Periodic("storefront-reconcile", RECONCILE_ROUND_S, reconcile_round),
        ),
        after_batch=lambda stats: work.set() if stats.applied else None,
    )


def create_app(settings: Settings | None = None) -> FastStream:
    return build_app(spec(), settings or Settings.from_env())


def tiktok_settings(
    app_key: str, shop_cipher: str, app_secret_file: Path, api: str = API, auth: str = AUTH
) -> dict[str, str]:
    """A TikTok shop's settings row: everything but the secret, which stays in its file."""
    return {
        "app_key": app_key,
        "shop_cipher": shop_cipher,
        "app_secret_file": str(app_secret_file.resolve()),
        "api": api,
        "auth": auth,
    }


def shopify_settings(shop_url: str, access_token_file: Path, version: str = SHOPIFY_VERSION) -> dict[str, str]:
    """A Shopify store's settings row: its Admin API URL and where its access token's file is."""
    return {"shop_url": shop_url, "access_token_file": str(access_token_file.resolve()), "version": version}


def amazon_settings(
    client_id: str,
    client_secret_file: Path,
    refresh_token_file: Path,
    *,
    api: str = AMAZON_API,
    auth: str = AMAZON_AUTH,
    settle_s: float = AMAZON_SETTLE_S,
) -> dict[str, Any]:
    """An Amazon seller's settings row: the app's LWA client id; its client secret and the seller's
    refresh token stay in their files. `settle_s`: how long after an order's creation the Orders
    API is trusted to list it."""
    return {
        "client_id": client_id,
        "client_secret_file": str(client_secret_file.resolve()),
        "refresh_token_file": str(refresh_token_file.resolve()),
        "api": api,
        "auth": auth,
        "settle_s": settle_s,
    }


def ebay_settings(client_id: str, client_secret_file: Path, api: str = EBAY_API) -> dict[str, str]:
    """An eBay seller's settings row: the app's client id, where its client secret's file is."""
    return {"client_id": client_id, "client_secret_file": str(client_secret_file.resolve()), "api": api}


def tokens_document(access_token: str, refresh_token: str, expires_at: int) -> dict[str, Any]:
    return {"access_token": access_token, "refresh_token": refresh_token, "access_token_expire_in": expires_at}
