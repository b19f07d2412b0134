-- An in-doubt batch whose probe record cannot be read (gone with retention, or truncated after an
-- unclean leader election) is never guessed: the relay records why, publishes nothing more, and
-- waits for an operator's `decision` (`rebound relay settle`).
ALTER TABLE rebound.relay_in_doubt
    ADD COLUMN unresolved    text,
    ADD COLUMN unresolved_at timestamptz,
    ADD COLUMN decision      text CHECK (decision IN ('committed', 'aborted'));
