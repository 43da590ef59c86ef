DELETE FROM signing_keys WHERE usage = 'workos';
ALTER TABLE signing_keys DROP COLUMN signs_from;
ALTER TABLE signing_keys DROP COLUMN usage;
