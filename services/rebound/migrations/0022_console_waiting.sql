-- What waits in the pipeline, as the console reads it: scans whose parcel has no return order
-- yet, inspections whose unit has no receipt yet. A row leaves when the receipt is read; one whose
-- receipt was read first is filtered out by the queries, and removed with the next receipt.
CREATE TABLE console.waiting (
    event_id     uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('scan', 'inspection')),
    seller_id    text        NOT NULL,
    key          text        NOT NULL,  -- a scan's tracking number, an inspection's LPN
    warehouse_id text        NOT NULL,
    since        timestamptz NOT NULL,  -- when the event happened
    seen_at      timestamptz NOT NULL DEFAULT now(),  -- when the console read it
    topic        text        NOT NULL,
    partition    int         NOT NULL,
    "offset"     bigint      NOT NULL,
    escalated_at timestamptz  -- when it became a case in the work queue
);
CREATE INDEX waiting_by_key ON console.waiting (seller_id, kind, key);
CREATE INDEX waiting_by_age ON console.waiting (seen_at) WHERE escalated_at IS NULL;

-- An inspection that waits too long for its receipt becomes a case of its own.
ALTER TABLE console.cases DROP CONSTRAINT cases_source_check;
ALTER TABLE console.cases ADD CONSTRAINT cases_source_check CHECK (source IN ('exception', 'dead_letter', 'waiting'));
