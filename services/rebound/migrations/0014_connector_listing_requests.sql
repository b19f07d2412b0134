-- The latest `storefront.listings.v1` request of each listing key (price, condition, the
-- marketplace's own condition and SKU): what an operator needs to create the listing on its
-- marketplace before mapping the key to it.
ALTER TABLE connectors.listings ADD COLUMN requested jsonb;
