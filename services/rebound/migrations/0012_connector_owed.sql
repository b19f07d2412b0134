-- Units a listing's marketplace sold beyond what Rebound offered there (an order to fill with the
-- key's next unit): a connector writes the key's next deltas less these.
ALTER TABLE connectors.listings ADD COLUMN owed int NOT NULL DEFAULT 0;
