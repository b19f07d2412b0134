-- Pruning looks for a consumer's rows older than the retention; without this index each prune
-- read the whole inbox once per partition, which on a large inbox outlasted the prune interval.
CREATE INDEX inbox_by_age ON rebound.inbox (consumer, processed_at);
