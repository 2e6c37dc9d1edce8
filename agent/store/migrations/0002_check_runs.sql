-- Runs of the named checks (morning, evening, weekly): what ran, for which
-- scheduled time, and how it ended. The scheduler reads the last scheduled
-- time per name so a check missed while the agent was down runs once.
CREATE TABLE check_runs (
    id        INTEGER PRIMARY KEY,
    name      TEXT NOT NULL,
    scheduled REAL NOT NULL,
    started   REAL NOT NULL,
    finished  REAL,
    status    TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'interrupted', 'skipped')),
    error     TEXT
);
CREATE INDEX check_runs_name_scheduled ON check_runs (name, scheduled);
