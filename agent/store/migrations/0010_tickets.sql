-- Tickets (one per fault, keyed by the alert's fingerprint) and their journal.
-- status 'recovered' = recovered, awaiting confirmation (tickets.confirm_recovery).
CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY,
    fingerprint      TEXT NOT NULL,
    rule             TEXT NOT NULL,
    level            TEXT NOT NULL,
    instance         TEXT NOT NULL DEFAULT '',
    labels           TEXT NOT NULL DEFAULT '{}',
    summary          TEXT NOT NULL DEFAULT '',
    description      TEXT NOT NULL DEFAULT '',
    solution         TEXT NOT NULL DEFAULT '',
    evidence         TEXT NOT NULL DEFAULT '',
    source           TEXT NOT NULL DEFAULT 'rules',
    status           TEXT NOT NULL
                     CHECK (status IN ('open', 'acknowledged', 'recovered', 'resolved', 'closed')),
    opened_at        REAL NOT NULL,
    clock_start      REAL NOT NULL,
    acknowledged_at  REAL,
    restored_at      REAL,
    resolved_at      REAL,
    closed_at        REAL,
    respond_due      REAL,
    restore_due      REAL,
    resolve_due      REAL,
    breached         TEXT NOT NULL DEFAULT '',
    escalation_stage INTEGER NOT NULL DEFAULT 0,
    occurrences      INTEGER NOT NULL DEFAULT 1,
    last_started     REAL,
    last_seen        REAL NOT NULL,
    external_refs    TEXT NOT NULL DEFAULT '{}',
    updated_at       REAL NOT NULL
);
CREATE INDEX tickets_fingerprint ON tickets (fingerprint, id);
CREATE INDEX tickets_status ON tickets (status, level);
-- the store itself guarantees one live ticket per fault, whatever happens to the process
CREATE UNIQUE INDEX tickets_one_live ON tickets (fingerprint)
    WHERE status IN ('open', 'acknowledged', 'recovered');

CREATE TABLE ticket_journal (
    id        INTEGER PRIMARY KEY,
    ticket_id INTEGER NOT NULL REFERENCES tickets (id),
    at        REAL NOT NULL,
    who       TEXT NOT NULL,
    kind      TEXT NOT NULL,
    text      TEXT NOT NULL DEFAULT '',
    data      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ticket_journal_ticket ON ticket_journal (ticket_id, id);
CREATE INDEX ticket_journal_kind ON ticket_journal (kind);
