-- CART sequencing per stream: one captioner (the token's `sub`) writing one language in one
-- session (issue 16), replacing the per-session `cart_seq`. `last_text` tells a retry of the
-- last caption from a conflicting reuse of its seq; `segment_end_ms` is where the next
-- caption's span may start (the last caption's end, or the time of a clear); `version` rises
-- with every change so that an older state never overwrites a newer one.
CREATE TABLE cart_streams (
    session        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    captioner      TEXT NOT NULL,
    lang           TEXT NOT NULL,
    last_seq       INTEGER NOT NULL,
    last_text      TEXT NOT NULL,
    last_at_ms     INTEGER NOT NULL,
    segment_end_ms INTEGER,
    version        INTEGER NOT NULL,
    run            INTEGER NOT NULL,
    PRIMARY KEY (session, captioner, lang)
) STRICT;
DROP TABLE cart_seq;

-- Who wrote a human caption (the captioner's `sub`); NULL for machine captions and for
-- captions stored before this migration.
ALTER TABLE caption_segments ADD COLUMN captioner TEXT;

-- One row the readiness probe and the start-up check rewrite to prove the database takes
-- writes.
CREATE TABLE store_probe (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms INTEGER NOT NULL
) STRICT;
