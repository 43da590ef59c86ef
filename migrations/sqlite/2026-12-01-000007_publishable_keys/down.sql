ALTER TABLE environments DROP COLUMN allowed_origins;
DELETE FROM api_keys WHERE scope = 'publishable';
ALTER TABLE api_keys ADD COLUMN scope_old TEXT NOT NULL DEFAULT 'admin' CHECK (scope_old IN ('evaluation', 'environment', 'admin'));
UPDATE api_keys SET scope_old = scope;
ALTER TABLE api_keys DROP COLUMN scope;
ALTER TABLE api_keys RENAME COLUMN scope_old TO scope;
