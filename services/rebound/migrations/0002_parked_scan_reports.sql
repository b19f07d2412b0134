-- A parcel waiting for its RMA is reported to operators once, when it has waited too long.
ALTER TABLE intake.parked_scans ADD COLUMN reported_at timestamptz;
CREATE INDEX parked_scans_unreported ON intake.parked_scans (parked_at) WHERE reported_at IS NULL;
