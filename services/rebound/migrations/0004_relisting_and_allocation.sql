-- Relisting: each seller's disposition policy (no row: the default policy, docs/design.md).
CREATE SCHEMA IF NOT EXISTS relisting;

CREATE TABLE relisting.policies (
    seller_id  text PRIMARY KEY REFERENCES rebound.sellers (seller_id),
    policy     jsonb NOT NULL,
    version    int NOT NULL CHECK (version > 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The ledger places every unit in exactly one place: a listing key, a pool, a lot, a non-sale
-- destination, or out of stock (sold, exchanged).
ALTER TABLE ledger.units
    ADD COLUMN sku          text,
    ADD COLUMN warehouse_id text,
    ADD COLUMN shop_id      text,
    ADD COLUMN place        text,   -- a destination kind, or lot | held | sold | exchanged
    ADD COLUMN pool         text,   -- lucky_bag / bundle_pool: the pool's name
    ADD COLUMN lot_id       text,
    ADD COLUMN candidate    int,    -- index into decision.candidates
    ADD COLUMN decision     jsonb,  -- the DispositionDecided the unit is placed by
    ADD COLUMN placed_at    timestamptz;
UPDATE ledger.units SET place = CASE WHEN stock_key IS NULL THEN 'held' ELSE 'listing' END WHERE place IS NULL;
CREATE INDEX ledger_units_by_place ON ledger.units (seller_id, warehouse_id, place, sku);
CREATE INDEX ledger_units_listed_since ON ledger.units (placed_at) WHERE place = 'listing';
CREATE INDEX ledger_units_by_key ON ledger.units (stock_key) WHERE stock_key IS NOT NULL;

-- Units the warehouse picked for orders: the storefront counted those sales itself.
ALTER TABLE ledger.stock ADD COLUMN picked int NOT NULL DEFAULT 0 CHECK (picked >= 0);

-- Listing keys a connector rejected or paused: no unit is placed there until an operator clears it.
CREATE TABLE ledger.blocked_listings (
    key        text PRIMARY KEY,
    seller_id  text NOT NULL,
    status     text NOT NULL,
    reason     text NOT NULL,
    ref_event_id uuid NOT NULL,
    blocked_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.lots (
    lot_id       text PRIMARY KEY,
    seller_id    text NOT NULL,
    warehouse_id text NOT NULL,
    pool         text NOT NULL,
    stock_key    text NOT NULL,
    lpns         text[] NOT NULL,
    status       text NOT NULL DEFAULT 'listed',  -- listed | sold
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Exchange requests answered, by the seller's exchange id (a retry under a new event id is not
-- served twice).
CREATE TABLE ledger.exchanges (
    seller_id   text NOT NULL,
    exchange_id text NOT NULL,
    status      text NOT NULL,
    lpn         text,
    source      text,
    answered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, exchange_id)
);
