-- Every claim names its seller (or ':position' for a dead letter): no default, so a replica of
-- before 0016 still running during an upgrade fails to claim instead of claiming under no seller
-- (which would not see the new rows, and could apply an event twice). Roll every replica.
ALTER TABLE rebound.inbox ALTER COLUMN seller_id DROP DEFAULT;
