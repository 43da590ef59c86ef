ALTER TABLE environments DROP COLUMN allowed_origins;
DELETE FROM api_keys WHERE scope = 'publishable';
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('evaluation', 'environment', 'admin'));
