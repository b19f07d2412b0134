-- Rebound core schema. Each service owns one schema; `rebound` holds what they share:
-- the seller registry, the inbox of processed events and the transactional outbox.
CREATE SCHEMA IF NOT EXISTS rebound;  -- also created by the migrator for its own table
CREATE SCHEMA IF NOT EXISTS intake;
CREATE SCHEMA IF NOT EXISTS grading;
CREATE SCHEMA IF NOT EXISTS ledger;

CREATE TABLE rebound.sellers (
    seller_id     text PRIMARY KEY,
    name          text NOT NULL,
    grading_rules jsonb,            -- NULL: the default rule (docs/design.md)
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per consumed event, written in the transaction of its effect.
CREATE TABLE rebound.inbox (
    consumer     text NOT NULL,
    event_id     uuid NOT NULL,
    fingerprint  bytea NOT NULL,    -- sha256 of the canonical content: same id + other content = conflict
    topic        text NOT NULL,
    partition    int NOT NULL,
    "offset"     bigint NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events waiting to reach Kafka; the relay deletes a row once its Kafka transaction committed.
CREATE TABLE rebound.outbox (
    id         bigserial PRIMARY KEY,
    producer   text NOT NULL,
    topic      text NOT NULL,
    key        text NOT NULL,
    payload    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX outbox_by_producer ON rebound.outbox (producer, id);

-- The relay's batch between "sent in a Kafka transaction" and "deleted from the outbox".
-- After a crash the probe record tells whether that Kafka transaction committed.
CREATE TABLE rebound.relay_in_doubt (
    producer        text PRIMARY KEY,
    outbox_ids      bigint[] NOT NULL,
    probe_topic     text NOT NULL,
    probe_partition int NOT NULL,
    probe_offset    bigint NOT NULL,
    probe_outbox_id bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- intake: return orders, their lines, registered units, parcels waiting for their RMA.
CREATE TABLE intake.rmas (
    seller_id       text NOT NULL,
    return_id       text NOT NULL,
    shop_id         text NOT NULL,
    channel         text NOT NULL,
    order_id        text NOT NULL,
    tracking_number text NOT NULL,
    reason_code     text NOT NULL,
    reason_category text NOT NULL,
    lane            text NOT NULL,
    issued_at       timestamptz NOT NULL,
    PRIMARY KEY (seller_id, return_id)
);
CREATE INDEX rmas_by_tracking ON intake.rmas (tracking_number);

CREATE TABLE intake.rma_lines (
    seller_id  text NOT NULL,
    return_id  text NOT NULL,
    line_id    text NOT NULL,
    position   int NOT NULL,
    sku        text NOT NULL,
    quantity   int NOT NULL CHECK (quantity > 0),
    received   int NOT NULL DEFAULT 0 CHECK (received >= 0 AND received <= quantity),
    unit_price numeric(18, 4) NOT NULL,
    currency   text NOT NULL,
    size       text,
    colour     text,
    PRIMARY KEY (seller_id, return_id, line_id),
    FOREIGN KEY (seller_id, return_id) REFERENCES intake.rmas
);

CREATE TABLE intake.units (
    lpn             text PRIMARY KEY,
    seller_id       text NOT NULL,
    return_id       text,            -- NULL: unexpected unit, parked for an operator
    line_id         text,
    sku             text NOT NULL,
    warehouse_id    text NOT NULL,
    tracking_number text NOT NULL,
    lane            text,
    scanned_at      timestamptz NOT NULL
);

CREATE TABLE intake.parked_scans (
    event_id        uuid PRIMARY KEY,
    seller_id       text NOT NULL,
    tracking_number text NOT NULL,
    payload         jsonb NOT NULL,
    source          jsonb NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_scans_by_tracking ON intake.parked_scans (seller_id, tracking_number);

-- grading: what is known of each unit, its latest inspection, and its current grade.
CREATE TABLE grading.units (
    lpn                 text PRIMARY KEY,
    seller_id           text NOT NULL,
    received            jsonb,       -- the UnitReceived event; NULL while an early inspection waits
    inspection          jsonb,       -- checks of the latest inspection
    inspection_event_id uuid,
    inspected_at        timestamptz,
    refurbished         text[] NOT NULL DEFAULT '{}',
    grade               text,
    reasons             text[],
    revision            int NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- ledger: where each unit is offered, and the sellable count per storefront key.
CREATE TABLE ledger.units (
    lpn        text PRIMARY KEY,
    seller_id  text NOT NULL,
    stock_key  text,                 -- NULL: not sellable (C, SCRAP)
    revision   int NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.stock (
    key          text PRIMARY KEY,   -- seller_id:channel:warehouse_id:sku:condition
    seller_id    text NOT NULL,
    shop_id      text NOT NULL,
    channel      text NOT NULL,
    warehouse_id text NOT NULL,
    sku          text NOT NULL,
    condition    text NOT NULL,
    available    int NOT NULL DEFAULT 0 CHECK (available >= 0),
    sequence     bigint NOT NULL DEFAULT 0
);
