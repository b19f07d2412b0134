-- A valid record that keeps failing for want of resources (statement or lock timeouts, out of
-- shared memory) is set aside here instead of being dead-lettered or retried forever: its bytes
-- are kept, it is reported as a `processing_parked` exception, and `rebound parked retry`
-- applies it again through its consumer. Its position is claimed in the inbox like a dead
-- letter's, so a redelivery does not park it twice; its event_id is not, so a retry applies it.
CREATE TABLE rebound.parked_records (
    consumer      text        NOT NULL,
    topic         text        NOT NULL,
    partition     int         NOT NULL,
    "offset"      bigint      NOT NULL,
    seller_id     text        NOT NULL,
    event_id      uuid        NOT NULL,
    key           bytea,
    value         bytea       NOT NULL,
    error         text        NOT NULL,
    attempts      int         NOT NULL,
    parked_at     timestamptz NOT NULL,
    last_tried_at timestamptz NOT NULL,
    PRIMARY KEY (consumer, topic, partition, "offset")
);
