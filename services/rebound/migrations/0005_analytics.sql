-- Facts the sellers' return analytics need that nothing kept yet: when each unit was first offered
-- on a storefront (dock-to-stock), and when, where and at what price it was sold (resale rate,
-- recovery value).
ALTER TABLE ledger.units
    ADD COLUMN first_offered_at timestamptz,  -- set once: the first listing key or lot it joined
    ADD COLUMN sold_at          timestamptz,
    ADD COLUMN sold_channel     text,
    ADD COLUMN sold_price       numeric(18, 4),  -- its share of the price it was offered at
    ADD COLUMN sold_currency    text;

-- Units offered or sold before these columns existed: the best facts at hand.
UPDATE ledger.units SET first_offered_at = placed_at
    WHERE first_offered_at IS NULL AND (stock_key IS NOT NULL OR place IN ('lot', 'sold'));
UPDATE ledger.units AS u SET
    sold_at = u.updated_at,
    sold_price = round(coalesce((u.decision->'candidates'->u.candidate->'price'->>'amount')::numeric,
                                (u.decision->'unit_price'->>'amount')::numeric)
                       / coalesce((SELECT cardinality(l.lpns) FROM ledger.lots l WHERE l.lot_id = u.lot_id), 1), 4),
    sold_currency = coalesce(u.decision->'candidates'->u.candidate->'price'->>'currency',
                             u.decision->'unit_price'->>'currency')
    WHERE u.place = 'sold' AND u.sold_at IS NULL AND u.decision IS NOT NULL;

-- Reports read one seller's units by the day they reached the dock.
CREATE INDEX units_by_seller_scanned ON intake.units (seller_id, scanned_at);

-- Insights already raised (returns.insights.v1): each one once per seller, SKU, size, kind and period.
CREATE TABLE intake.insights_raised (
    seller_id text NOT NULL,
    sku       text NOT NULL,
    size      text NOT NULL,
    kind      text NOT NULL,
    period    text NOT NULL,
    event_id  uuid NOT NULL,
    raised_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, sku, size, kind, period)
);
