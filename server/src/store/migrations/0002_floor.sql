-- The floor queue's event log: every transition, stored before it is announced. Replaying a
-- session's rows in id order rebuilds its queue; the row id is the SSE event id.
CREATE TABLE floor_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    session TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    at_ms   INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    data    TEXT NOT NULL
) STRICT;
CREATE INDEX floor_events_by_session ON floor_events (session, id);

-- Who took part (watched or raised a hand), for the post-session report.
CREATE TABLE participants (
    session       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    sub           TEXT NOT NULL,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    hub           TEXT,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    PRIMARY KEY (session, sub)
) STRICT;
