-- Each environment signs with two keys: `tokens` (its own algorithm, for
-- /api/v1/sessions) and `workos` (RS256, what the WorkOS SDKs verify). A
-- rotated-in key is published at once but signs only from `signs_from`,
-- after the verifiers' caches have seen it.
ALTER TABLE signing_keys ADD COLUMN usage TEXT NOT NULL DEFAULT 'tokens' CHECK (usage IN ('tokens', 'workos'));
ALTER TABLE signing_keys ADD COLUMN signs_from TEXT;
