-- Dashboard sessions kept on the server, so that signing out, the idle and
-- absolute timeouts, "sign out everywhere" and a password change end them
-- for good on every instance. The cookie holds only the token; the table
-- holds its SHA-256.
CREATE TABLE admin_sessions (
    token_hash TEXT PRIMARY KEY NOT NULL,
    admin_id TEXT NOT NULL REFERENCES admins (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    revoked_at TEXT,
    user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX admin_sessions_admin ON admin_sessions (admin_id);

-- One-time links that create the first owner, kept as SHA-256 with an
-- expiry, so `flagpole admin setup-link` can issue one to a running server.
CREATE TABLE setup_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);

-- What a key may do: evaluation < environment < admin. Keys made before
-- scopes could do everything, and keep doing it.
ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin' CHECK (scope IN ('evaluation', 'environment', 'admin'));
