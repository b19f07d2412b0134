-- The console's read models, fed by its own consumer (`rebound run console`) from the topics
-- alone: it never reads the services' tables, and nothing but the console writes these.
-- Every row is keyed by what it was made from, so a record read twice changes nothing.
CREATE SCHEMA IF NOT EXISTS console;

-- Every event of a unit's path, with a line saying what happened and why.
CREATE TABLE console.events (
    event_id    uuid        PRIMARY KEY,
    topic       text        NOT NULL,
    seller_id   text,
    occurred_at timestamptz NOT NULL,
    summary     text        NOT NULL,
    body        jsonb       NOT NULL
);

-- What an event can be found by: its units (lpn), its return, its parcel (tracking), its order,
-- its SKU, and the stock adjustment an acknowledgement answers (ref).
CREATE TABLE console.event_keys (
    kind     text NOT NULL,
    value    text NOT NULL,
    event_id uuid NOT NULL REFERENCES console.events ON DELETE CASCADE,
    PRIMARY KEY (kind, value, event_id)
);
CREATE INDEX event_keys_by_event ON console.event_keys (event_id);

-- Exceptions and dead letters as work: one case per reported event, with its owner and status.
CREATE TABLE console.cases (
    case_id     uuid        PRIMARY KEY,
    source      text        NOT NULL CHECK (source IN ('exception', 'dead_letter')),
    kind        text        NOT NULL,
    seller_id   text,
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
    owner       text,
    opened_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    detail      text        NOT NULL,
    topic       text        NOT NULL,
    partition   int         NOT NULL,
    "offset"    bigint      NOT NULL,
    consumer    text,
    key         text,
    event       jsonb       NOT NULL
);
CREATE INDEX cases_open_by_age ON console.cases (opened_at) WHERE status = 'open';
CREATE INDEX cases_by_seller ON console.cases (seller_id, opened_at);

-- Who did what to a case, and when.
CREATE TABLE console.audit (
    id      bigserial   PRIMARY KEY,
    case_id uuid        NOT NULL REFERENCES console.cases,
    actor   text        NOT NULL,
    at      timestamptz NOT NULL DEFAULT now(),
    action  text        NOT NULL,
    detail  jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_case ON console.audit (case_id, id);

-- Each listing key's stock as its latest adjustment states it, and the latest answer of its shop.
CREATE TABLE console.stock (
    seller_id    text        NOT NULL,
    channel      text        NOT NULL,
    warehouse_id text        NOT NULL,
    sku          text        NOT NULL,
    condition    text        NOT NULL,
    available    int         NOT NULL,
    picked       int         NOT NULL,
    sequence     bigint      NOT NULL,
    updated_at   timestamptz NOT NULL,
    ack_status   text,
    ack_reason   text,
    ack_at       timestamptz,
    PRIMARY KEY (seller_id, channel, warehouse_id, sku, condition)
);
