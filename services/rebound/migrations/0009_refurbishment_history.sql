-- grading: each refurbishment with when it was done, so that only work done after the inspection
-- in force lifts a grade. `refurbished` keeps the actions that count against that inspection.
ALTER TABLE grading.units ADD COLUMN refurbishments jsonb NOT NULL DEFAULT '[]';

-- Work recorded before the history existed counted against the inspection stored then: it is
-- dated just after that inspection, or at the row's last change when none was stored yet.
UPDATE grading.units
SET refurbishments = jsonb_build_array(jsonb_build_object(
    'at', COALESCE(inspected_at + interval '1 microsecond', updated_at), 'actions', to_jsonb(refurbished)))
WHERE refurbished <> '{}';
