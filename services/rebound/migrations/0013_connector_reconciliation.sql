-- Reconciliation: a listing's baseline (the last number a connector made its marketplace show,
-- when it read the number it wrote over, and the sales it knew of then: the number must be the
-- baseline less the sales since), the last adjustment applied (the ledger's view of the key, and
-- what an exception about it refers to), and when the marketplace's number was last compared.
ALTER TABLE connectors.listings
    ADD COLUMN baseline jsonb,
    ADD COLUMN last_applied jsonb,
    ADD COLUMN reconciled_at timestamptz NOT NULL DEFAULT now();
