-- connectors: the listing keys that may be due, found from the connected shops without reading
-- every listing. A key is due for a write in flight (intent), for its next adjustment received,
-- or for a price not pushed yet. received_through is the highest adjustment sequence received
-- for the key: above applied_through, adjustments wait (due once the next one is there).
ALTER TABLE connectors.listings ADD COLUMN received_through bigint NOT NULL DEFAULT 0;
UPDATE connectors.listings l SET received_through = a.through
    FROM (SELECT key, max(sequence) AS through FROM connectors.adjustments GROUP BY key) AS a
    WHERE a.key = l.key;
CREATE INDEX listings_maybe_due ON connectors.listings (seller_id, channel, shop_id)
    WHERE blocked IS NULL AND (intent IS NOT NULL OR received_through > applied_through
        OR (ids IS NOT NULL AND priced IS DISTINCT FROM ((requested -> 'event' ->> 'event_id')::uuid)));
