-- A listing key can wait without its shop waiting: its sales are not known far enough yet (a
-- marketplace whose orders are read in the background), or it has used its revisions for now.
ALTER TABLE connectors.listings ADD COLUMN not_before timestamptz;
