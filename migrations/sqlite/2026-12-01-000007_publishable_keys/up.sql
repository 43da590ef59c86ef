-- Publishable keys (pk_…): the lowest scope, evaluation from browsers. The
-- scope's CHECK is rebuilt to allow it (SQLite cannot alter a CHECK, so the
-- column is replaced).
ALTER TABLE api_keys ADD COLUMN scope_new TEXT NOT NULL DEFAULT 'admin' CHECK (scope_new IN ('publishable', 'evaluation', 'environment', 'admin'));
UPDATE api_keys SET scope_new = scope;
ALTER TABLE api_keys DROP COLUMN scope;
ALTER TABLE api_keys RENAME COLUMN scope_new TO scope;

-- The browser origins allowed to call an environment, comma-separated.
ALTER TABLE environments ADD COLUMN allowed_origins TEXT NOT NULL DEFAULT '';
