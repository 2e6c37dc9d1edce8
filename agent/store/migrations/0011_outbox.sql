-- Durable outbox: every notification and external call, written in the same
-- transaction as the state change that caused it, delivered by a worker.
-- key is the idempotency key sent with the delivery (unique: nothing twice).
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE,
    channel     TEXT NOT NULL,
    ticket_id   INTEGER,
    event       TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dead', 'folded')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,
    created_at  REAL NOT NULL,
    sent_at     REAL,
    last_error  TEXT NOT NULL DEFAULT '',
    digest_id   INTEGER
);
CREATE INDEX outbox_due ON outbox (status, next_at);
CREATE INDEX outbox_channel_sent ON outbox (channel, sent_at);
