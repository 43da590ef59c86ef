ALTER TABLE api_keys DROP COLUMN scope;
DROP TABLE setup_tokens;
DROP TABLE admin_sessions;
