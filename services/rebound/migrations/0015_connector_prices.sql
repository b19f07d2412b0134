-- The listing request whose price is on the marketplace (its event_id): a newer request's price
-- is set before the key's next quantity.
ALTER TABLE connectors.listings ADD COLUMN priced uuid;
