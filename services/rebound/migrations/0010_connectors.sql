-- connectors: what the storefront connectors keep to apply each listing key's adjustments to its
-- marketplace exactly once, in sequence order, onto the marketplace's own number.
CREATE SCHEMA IF NOT EXISTS connectors;

-- A seller's shop on a marketplace: the adapter's settings (no secret: secrets are files, named
-- here) and the tokens that rotate, replaced together.
CREATE TABLE connectors.shops (
    seller_id  text NOT NULL,
    channel    text NOT NULL,
    shop_id    text NOT NULL,
    settings   jsonb NOT NULL,
    tokens     jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, channel, shop_id)
);

-- Each listing key (seller:channel:warehouse:sku:condition): its marketplace ids (NULL: not
-- mapped yet), how far its adjustments are applied, and the write in flight, recorded before the
-- marketplace is called and resolved by reading it back if the connector dies meanwhile.
CREATE TABLE connectors.listings (
    key             text PRIMARY KEY,
    seller_id       text NOT NULL,
    channel         text NOT NULL,
    shop_id         text NOT NULL,
    ids             jsonb,
    applied_through bigint NOT NULL DEFAULT 0,
    intent          jsonb,
    blocked         text,          -- why it is not moved any more; NULL: it is
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Adjustments received and not applied yet (deleted once applied).
CREATE TABLE connectors.adjustments (
    key       text NOT NULL,
    sequence  bigint NOT NULL,
    delta     int NOT NULL,
    event     jsonb NOT NULL,       -- the StockAdjusted event
    source    jsonb NOT NULL,       -- where it was read: topic, partition, offset
    PRIMARY KEY (key, sequence)
);
