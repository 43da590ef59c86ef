CREATE TABLE admins (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'editor', 'viewer')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE environments (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    color TEXT NOT NULL,
    require_confirmation BOOLEAN NOT NULL DEFAULT 0,
    client_id TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE flags (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    archived BOOLEAN NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX flags_created_at ON flags (created_at);

CREATE TABLE flag_tags (
    flag_id TEXT NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (flag_id, tag)
);
CREATE INDEX flag_tags_tag ON flag_tags (tag);

CREATE TABLE rules (
    flag_id TEXT NOT NULL REFERENCES flags (id) ON DELETE CASCADE,
    environment_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    mode TEXT NOT NULL CHECK (mode IN ('none', 'some', 'all')),
    enabled BOOLEAN NOT NULL DEFAULT 0,
    version INTEGER NOT NULL DEFAULT 1,
    updated_by TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (flag_id, environment_id)
);
CREATE INDEX rules_environment ON rules (environment_id);

CREATE TABLE organizations (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    external_id TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX organizations_name ON organizations (name);

CREATE TABLE users (
    id TEXT PRIMARY KEY NOT NULL,
    email TEXT NOT NULL UNIQUE,
    first_name TEXT NOT NULL DEFAULT '',
    last_name TEXT NOT NULL DEFAULT '',
    external_id TEXT UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE memberships (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, organization_id)
);
CREATE INDEX memberships_organization ON memberships (organization_id);

CREATE TABLE targets (
    flag_id TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    target_type TEXT NOT NULL CHECK (target_type IN ('user', 'organization')),
    target_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (flag_id, environment_id, target_id),
    FOREIGN KEY (flag_id, environment_id) REFERENCES rules (flag_id, environment_id) ON DELETE CASCADE
);
CREATE INDEX targets_target ON targets (target_id);

CREATE TABLE audit_events (
    id TEXT PRIMARY KEY NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    object_type TEXT NOT NULL,
    object_id TEXT NOT NULL,
    object_label TEXT NOT NULL,
    flag_id TEXT,
    environment_id TEXT,
    before_state TEXT,
    after_state TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX audit_events_flag ON audit_events (flag_id);
