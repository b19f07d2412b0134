"""A local Shopify, faithful where a connector can go wrong: the Admin GraphQL API's inventory
calls, executed by a real GraphQL engine against the part of Shopify's schema they use (a query
that asks for a field Shopify does not have fails as it would there), the access token,
`changeFromQuantity` compare-and-set and `@idempotent(key:)` both mandatory as from API 2026-04,
and a leaky-bucket throttle answering `THROTTLED` with `extensions.cost`. Its buyers buy on their
own, never below zero, and each sale is an order with its line item.

Stores live under `/{store}/admin/api/{version}/graphql.json`; tests and the demo drive it under
`/_standin/`: `PUT stores/{store}` (`token`), `POST stores/{store}/levels` (`item`, `location`,
`quantity`), `PUT faults` (`throttled`, `server_errors` as shares, `sales_before_write`), `GET
state`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLResolveInfo, build_schema, graphql, value_from_ast_untyped
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp
from starlette.routing import Route

from . import Buyers, LateAnswers, late_answers

SCHEMA = build_schema("""
directive @idempotent(key: String!) on FIELD
scalar DateTime

type Query {
  shop: Shop!
  inventoryItem(id: ID!): InventoryItem
  orders(first: Int!, after: String, query: String): OrderConnection!
}
type Shop { currencyCode: String! }
type InventoryItem { id: ID! variant: ProductVariant! inventoryLevel(locationId: ID!): InventoryLevel }
type InventoryLevel { id: ID! quantities(names: [String!]!): [InventoryQuantity!]! }
type InventoryQuantity { name: String! quantity: Int! }
type OrderConnection { nodes: [Order!]! pageInfo: PageInfo! }
type PageInfo { hasNextPage: Boolean! endCursor: String }
type Order { id: ID! createdAt: DateTime! cancelledAt: DateTime lineItems(first: Int!): LineItemConnection! }
type LineItemConnection { nodes: [LineItem!]! }
type LineItem { id: ID! quantity: Int! variant: ProductVariant }
type ProductVariant { id: ID! price: String! product: Product! inventoryItem: InventoryItem! }
type Product { id: ID! }

type Mutation {
  inventorySetQuantities(input: InventorySetQuantitiesInput!): InventorySetQuantitiesPayload
  productVariantsBulkUpdate(productId: ID!, variants: [ProductVariantsBulkInput!]!): ProductVariantsBulkUpdatePayload
}
input ProductVariantsBulkInput { id: ID price: String }
type ProductVariantsBulkUpdatePayload {
  productVariants: [ProductVariant!] userErrors: [ProductVariantsBulkUpdateUserError!]!
}
type ProductVariantsBulkUpdateUserError { code: String field: [String!] message: String! }
input InventorySetQuantitiesInput {
  name: String! reason: String! referenceDocumentUri: String quantities: [InventoryQuantityInput!]!
}
input InventoryQuantityInput { inventoryItemId: ID! locationId: ID! quantity: Int! changeFromQuantity: Int }
type InventorySetQuantitiesPayload {
  inventoryAdjustmentGroup: InventoryAdjustmentGroup userErrors: [InventorySetQuantitiesUserError!]!
}
type InventoryAdjustmentGroup {
  createdAt: DateTime! reason: String! referenceDocumentUri: String changes: [InventoryChange!]!
}
type InventoryChange { name: String! delta: Int! quantityAfterChange: Int }
type InventorySetQuantitiesUserError { code: String field: [String!] message: String! }
""")

BUCKET, RESTORE_PER_S = 2000.0, 100.0  # a Standard plan's bucket
QUERY_COST, MUTATION_COST = 2.0, 10.0
REASONS = {"restock": "Restock", "correction": "Inventory correction", "received": "Inventory received"}


@dataclass
class Level:
    item: str
    location: str
    quantity: int = 0
    sold: int = 0


@dataclass
class Variant:
    """The product variant an inventory item belongs to, with its price in the store's currency."""

    id: str
    product: str
    price: str = "0.00"


@dataclass
class Faults(LateAnswers):
    throttled: float = 0.0
    server_errors: float = 0.0
    sales_before_write: int = 0
    """The next this many writes of an item in stock each land just after a buyer bought a unit of it."""


@dataclass
class Store:
    token: str
    levels: dict[tuple[str, str], Level] = field(default_factory=dict)
    orders: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, tuple[Any, dict]] = field(default_factory=dict)
    bucket: float = BUCKET
    bucket_at: float = 0.0
    currency: str = "USD"
    variants: dict[str, Variant] = field(default_factory=dict)  # by inventory item


class ShopifyStandIn:
    def __init__(self, *, seed: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.stores: dict[str, Store] = {}
        self.faults = Faults()
        self.writes = 0
        self.rng = random.Random(seed)
        self.clock = clock
        self._ids = 1000
        self.buyers = Buyers(self.sell_one, self.rng)
        self.app: ASGIApp = Starlette(
            routes=[
                Route("/{store}/admin/api/{version}/graphql.json", self.graphql, methods=["POST"]),
                Route("/_standin/stores/{store}", self.add_store, methods=["PUT"]),
                Route("/_standin/stores/{store}/levels", self.put_level, methods=["POST"]),
                Route("/_standin/faults", self.set_faults, methods=["PUT"]),
                Route("/_standin/state", self.show_state, methods=["GET"]),
            ],
            lifespan=self.buyers.running,
        )
        self.app = late_answers(self.app, lambda: self.faults, self.rng)

    def _id(self, kind: str) -> str:
        self._ids += 1
        return f"gid://shopify/{kind}/{self._ids}"

    def add_level(self, store: str, item: str, location: str, quantity: int = 0) -> Level:
        level = self.stores[store].levels[(item, location)] = Level(item, location, quantity)
        if item not in self.stores[store].variants:
            self.stores[store].variants[item] = Variant(self._id("ProductVariant"), self._id("Product"))
        return level

    # --- the API ---------------------------------------------------------------------------

    async def graphql(self, request: Request) -> Response:
        store = self.stores.get(request.path_params["store"])
        if store is None or request.headers.get("x-shopify-access-token") != store.token:
            return _json(
                {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401
            )
        if self.rng.random() < self.faults.server_errors:
            return Response("Service Unavailable", status_code=503)
        try:
            body = orjson.loads(await request.body())
            query, variables = body["query"], body.get("variables") or {}
        except (ValueError, KeyError, TypeError):
            return _json({"errors": [{"message": "Bad Request"}]}, 400)
        cost = MUTATION_COST if query.lstrip().startswith("mutation") else QUERY_COST
        now = self.clock()
        store.bucket = min(BUCKET, store.bucket + (now - store.bucket_at) * RESTORE_PER_S)
        store.bucket_at = now
        throttle = {"maximumAvailable": BUCKET, "currentlyAvailable": int(store.bucket), "restoreRate": RESTORE_PER_S}
        if store.bucket < cost or self.rng.random() < self.faults.throttled:
            return _json(
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": {
                        "cost": {"requestedQueryCost": cost, "actualQueryCost": None, "throttleStatus": throttle}
                    },
                }
            )
        store.bucket -= cost
        result = await graphql(
            SCHEMA, query, root_value=self, context_value=store, variable_values=variables, field_resolver=_resolve
        )
        answer: dict[str, Any] = {"data": result.data}
        if result.errors:
            answer["errors"] = [e.formatted for e in result.errors]
        answer["extensions"] = {
            "cost": {
                "requestedQueryCost": cost,
                "actualQueryCost": cost,
                "throttleStatus": {**throttle, "currentlyAvailable": int(store.bucket)},
            }
        }
        return _json(answer)

    def inventory_item(self, store: Store, item_id: str) -> dict | None:
        if not any(item == item_id for item, _ in store.levels):
            return None
        return {
            "id": item_id,
            "inventoryLevel": lambda location_id: self._level(store, item_id, location_id),
            "variant": lambda: self._variant(store, item_id),
        }

    @staticmethod
    def _variant(store: Store, item: str) -> dict:
        variant = store.variants[item]
        return {
            "id": variant.id,
            "price": variant.price,
            "product": {"id": variant.product},
            "inventoryItem": {"id": item},
        }

    def update_variants(self, store: Store, product: str, variants: list[dict]) -> dict:
        """Prices of a product's variants, in the store's currency (a decimal string)."""
        by_id = {v.id: (item, v) for item, v in store.variants.items() if v.product == product}
        if not by_id:
            return {
                "productVariants": None,
                "userErrors": [
                    {"code": "PRODUCT_DOES_NOT_EXIST", "field": ["productId"], "message": "Product does not exist"}
                ],
            }
        for n, given in enumerate(variants):
            if given.get("id") not in by_id:
                return {
                    "productVariants": None,
                    "userErrors": [
                        {
                            "code": "PRODUCT_VARIANT_DOES_NOT_EXIST",
                            "field": ["variants", str(n), "id"],
                            "message": "Product variant does not exist",
                        }
                    ],
                }
            try:
                if "price" in given and Decimal(given["price"]) < 0:
                    raise ArithmeticError
            except ArithmeticError:
                return {
                    "productVariants": None,
                    "userErrors": [
                        {"code": "INVALID", "field": ["variants", str(n), "price"], "message": "Price is invalid"}
                    ],
                }
        for given in variants:
            if "price" in given:
                by_id[given["id"]][1].price = f"{Decimal(given['price']):.2f}"
        return {"productVariants": [self._variant(store, by_id[g["id"]][0]) for g in variants], "userErrors": []}

    @staticmethod
    def _level(store: Store, item: str, location: str) -> dict | None:
        level = store.levels.get((item, location))
        if level is None:
            return None
        return {
            "id": f"gid://shopify/InventoryLevel/{abs(hash((item, location))) % 10**9}?inventory_item_id={item}",
            "quantities": lambda names: [
                {"name": n, "quantity": level.quantity} for n in names if n in ("available", "on_hand")
            ],
        }

    def orders(self, store: Store, first: int, after: str | None, query: str | None) -> dict:
        since = ""
        for term in (query or "").split():
            if term.startswith("created_at:>="):
                since = term.removeprefix("created_at:>=")
        matching = [o for o in store.orders if o["createdAt"] >= since]
        start = int(after) if after else 0
        page = matching[start : start + first]
        more = start + first < len(matching)
        return {
            "nodes": [{**o, "lineItems": lambda first, o=o: {"nodes": o["lineItems"][:first]}} for o in page],
            "pageInfo": {"hasNextPage": more, "endCursor": str(start + first) if more else None},
        }

    def set_quantities(self, store: Store, given: dict, key: str | None) -> dict:
        if key is None:
            raise GraphQLError(
                "The @idempotent directive is required for this mutation but was not provided.",
                extensions={"code": "BAD_REQUEST"},
            )
        for change in given["quantities"]:
            if "changeFromQuantity" not in change:
                raise GraphQLError(
                    "InventoryQuantityInput must include the following argument: changeFromQuantity",
                    extensions={"code": "INVALID_FIELD_ARGUMENTS"},
                )
        if key in store.idempotency:
            earlier, result = store.idempotency[key]
            if earlier != given:
                return {
                    "inventoryAdjustmentGroup": None,
                    "userErrors": [
                        {
                            "code": "IDEMPOTENCY_KEY_PARAMETER_MISMATCH",
                            "field": None,
                            "message": "The same idempotency key cannot be used with different operation parameters.",
                        }
                    ],
                }
            return result
        result = self._set(store, given)
        store.idempotency[key] = (given, result)
        return result

    def _set(self, store: Store, given: dict) -> dict:
        if given["name"] not in ("available", "on_hand"):
            return _user_error("INVALID_NAME", ["input", "name"], "The quantity name must be available or on_hand.")
        changes, writes = [], []
        for n, change in enumerate(given["quantities"]):
            level = store.levels.get((change["inventoryItemId"], change["locationId"]))
            where = ["input", "quantities", str(n)]
            if level is None:
                return _user_error("ITEM_NOT_STOCKED_AT_LOCATION", where, "The item is not stocked at the location.")
            if change["quantity"] < 0:
                return _user_error("INVALID_QUANTITY_NEGATIVE", [*where, "quantity"], "The quantity can't be negative.")
            if self.faults.sales_before_write > 0 and self.sell_one(store, level) is not None:
                self.faults.sales_before_write -= 1
            expected = change["changeFromQuantity"]
            if expected is not None and expected != level.quantity:
                return _user_error(
                    "CHANGE_FROM_QUANTITY_STALE",
                    [*where, "changeFromQuantity"],
                    "The specified compare quantity does not match the current quantity.",
                )
            writes.append((level, change["quantity"]))
        for level, quantity in writes:
            changes += [
                {"name": name, "delta": quantity - level.quantity, "quantityAfterChange": None}
                for name in ("available", "on_hand")
            ]
            level.quantity = quantity
            self.writes += 1
        return {
            "inventoryAdjustmentGroup": {
                "createdAt": _now(self.clock()),
                "reason": REASONS.get(given["reason"], given["reason"]),
                "referenceDocumentUri": given.get("referenceDocumentUri"),
                "changes": changes,
            },
            "userErrors": [],
        }

    # --- buyers ------------------------------------------------------------------------------

    def sell_one(self, store: Store | None = None, level: Level | None = None) -> Level | None:
        """A buyer buys one unit of `level` (or of any level of any store that has one)."""
        candidates = (
            [(store, level)] if store and level else [(s, lv) for s in self.stores.values() for lv in s.levels.values()]
        )
        candidates = [(s, lv) for s, lv in candidates if lv.quantity > 0]
        if not candidates:
            return None
        store, level = self.rng.choice(candidates)
        level.quantity -= 1
        level.sold += 1
        store.orders.append(
            {
                "id": self._id("Order"),
                "createdAt": _now(self.clock()),
                "cancelledAt": None,
                "location": level.location,
                "lineItems": [
                    {
                        "id": self._id("LineItem"),
                        "quantity": 1,
                        "variant": {"id": self._id("ProductVariant"), "inventoryItem": {"id": level.item}},
                    }
                ],
            }
        )
        return level

    # --- what a test or the demo tells it ----------------------------------------------------

    async def add_store(self, request: Request) -> Response:
        self.stores[request.path_params["store"]] = Store(token=orjson.loads(await request.body())["token"])
        return Response(status_code=204)

    async def put_level(self, request: Request) -> Response:
        given = orjson.loads(await request.body())
        if request.path_params["store"] not in self.stores:
            return _json({"error": "no such store"}, 404)
        self.add_level(request.path_params["store"], given["item"], given["location"], int(given.get("quantity", 0)))
        return Response(status_code=204)

    async def set_faults(self, request: Request) -> Response:
        self.faults = Faults(**orjson.loads(await request.body()))
        return Response(status_code=204)

    async def show_state(self, _request: Request) -> Response:
        return _json(
            {
                name: {"levels": [asdict(level) for level in store.levels.values()], "orders": len(store.orders)}
                for name, store in self.stores.items()
            }
        )


def _resolve(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Fields of the root resolve on the stand-in; the others are plain values or callables of
    their arguments."""
    name = info.field_name
    if isinstance(source, ShopifyStandIn):
        store: Store = info.context
        if name == "shop":
            return {"currencyCode": store.currency}
        if name == "inventoryItem":
            return source.inventory_item(store, args["id"])
        if name == "productVariantsBulkUpdate":
            return source.update_variants(store, args["productId"], args["variants"])
        if name == "orders":
            return source.orders(store, args["first"], args.get("after"), args.get("query"))
        if name == "inventorySetQuantities":
            return source.set_quantities(store, args["input"], _idempotency_key(info))
        raise GraphQLError(f"Field '{name}' is not served by this stand-in")
    value = source.get(name) if isinstance(source, dict) else getattr(source, name, None)
    return value(**{_snake(k): v for k, v in args.items()}) if callable(value) else value


def _idempotency_key(info: GraphQLResolveInfo) -> str | None:
    for directive in info.field_nodes[0].directives or ():
        if directive.name.value == "idempotent":
            for argument in directive.arguments or ():
                if argument.name.value == "key":
                    key = value_from_ast_untyped(argument.value, info.variable_values.coerced)
                    return str(key) if key else None
    return None


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _user_error(code: str, where: list[str], message: str) -> dict:
    return {"inventoryAdjustmentGroup": None, "userErrors": [{"code": code, "field": where, "message": message}]}


def _now(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
