-- Event ids are unique per seller, not across sellers: one tenant reusing another's event_id is
-- another event, never a duplicate or a conflict of the first. Rows written before this carry
-- no seller ('') and are matched for every seller until pruning removes them (see `inbox.claim_all`).
-- Dead letters are claimed by position, with no seller (''). The new key rebuilds the inbox's
-- primary key index: on an inbox of millions of rows the migration holds it for a while.
ALTER TABLE rebound.inbox ADD COLUMN seller_id text NOT NULL DEFAULT '';
ALTER TABLE rebound.inbox DROP CONSTRAINT inbox_pkey, ADD PRIMARY KEY (consumer, seller_id, event_id);

-- A parked scan is one seller's: another seller's scan with the same event_id is parked beside it.
ALTER TABLE intake.parked_scans DROP CONSTRAINT parked_scans_pkey, ADD PRIMARY KEY (seller_id, event_id);
