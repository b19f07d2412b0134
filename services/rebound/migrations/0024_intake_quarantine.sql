-- intake: an unexpected unit an operator set aside for good, and why.
ALTER TABLE intake.units ADD COLUMN quarantine_reason text, ADD COLUMN quarantined_at timestamptz;
