-- Final caption segments, machine (asr) and human (cart), in arrival order. `shown` is 0 for
-- machine captions held back because a captioner of their language was active: they stay
-- as the `asr` alternative in the JSON transcript. Times are Unix milliseconds.
CREATE TABLE caption_segments (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    session    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    source     TEXT NOT NULL,
    lang       TEXT NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    text       TEXT NOT NULL,
    shown      INTEGER NOT NULL,
    confidence REAL
) STRICT;
CREATE INDEX caption_segments_by_session ON caption_segments (session, start_ms);

-- The last CART `seq` per session (Zoom's closed-caption API): a repeated seq is a retry.
CREATE TABLE cart_seq (
    session  TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    last_seq INTEGER NOT NULL
) STRICT;
