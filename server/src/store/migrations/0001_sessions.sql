-- Sessions served by this node. created_at: Unix seconds, UTC.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    title      TEXT NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;
