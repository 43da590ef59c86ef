-- Publishable keys (pk_…): the lowest scope, evaluation from browsers.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('publishable', 'evaluation', 'environment', 'admin'));

-- The browser origins allowed to call an environment, comma-separated.
ALTER TABLE environments ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
