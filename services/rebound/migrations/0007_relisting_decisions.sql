-- The grade each unit was last decided on, and under which policy version: when a seller sets a
-- new policy, relisting decides those units again and the ledger moves them.
CREATE TABLE relisting.decisions (
    lpn            text PRIMARY KEY,
    seller_id      text NOT NULL,
    grade_revision int NOT NULL,
    policy_version int NOT NULL,
    graded         jsonb NOT NULL,  -- the UnitGraded the decision was made from
    decided_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX relisting_decisions_by_seller ON relisting.decisions (seller_id, policy_version);
