-- An RMA takes the parked scans of its tracking number whichever seller sent them.
CREATE INDEX parked_scans_by_tracking_only ON intake.parked_scans (tracking_number);
