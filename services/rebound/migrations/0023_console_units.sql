-- Where each unit is, as the console read it: its latest allocation (the latest `occurred_at`
-- wins, whatever order they are read in) and its latest pick.
CREATE TABLE console.units (
    seller_id      text        NOT NULL,
    lpn            text        NOT NULL,
    warehouse_id   text,
    sku            text,
    place          text,        -- the destination's kind (listing, exchange_pool, ...); NULL: held
    channel        text,
    condition      text,
    placed_at      timestamptz,
    picked_at      timestamptz,
    picked_channel text,
    PRIMARY KEY (seller_id, lpn)
);
CREATE INDEX units_on_offer ON console.units (seller_id, channel, warehouse_id, sku, condition) WHERE place = 'listing';
