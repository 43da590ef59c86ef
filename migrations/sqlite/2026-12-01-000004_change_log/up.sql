-- The change log: one row per change that can alter an answer (a rule, a
-- flag, an environment, a deleted or renamed target, keys, a membership of
-- a targeted organization), numbered by the revision it took. Each
-- instance applies the rows after the revision its model reflects; writers
-- take revisions under the row lock of `revisions`, so they commit in order
-- and a reader never sees a later row without the earlier ones.
CREATE TABLE changes (
    revision BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    flag_id TEXT,
    environment_id TEXT,
    subject_id TEXT,
    created_at TEXT NOT NULL
);
