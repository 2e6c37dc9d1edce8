-- The checklist of each named check run (morning, evening, weekly, user-defined),
-- one row per check_runs row that produced a report: the report JSON (schema in
-- docs/checks-runs.md) and its counts, so reports and `opsagent check history`
-- can list runs without decoding every report.
CREATE TABLE check_results (
    run_id   INTEGER PRIMARY KEY REFERENCES check_runs (id),
    name     TEXT NOT NULL,
    origin   TEXT NOT NULL CHECK (origin IN ('schedule', 'cli')),
    status   TEXT NOT NULL CHECK (status IN ('OK', 'WARN', 'FAIL', 'UNKNOWN')),
    ok       INTEGER NOT NULL,
    warn     INTEGER NOT NULL,
    fail     INTEGER NOT NULL,
    unknown  INTEGER NOT NULL,
    -- firing alerts at P1/P2: the check failed (exit code 1)
    urgent   INTEGER NOT NULL,
    finished REAL NOT NULL,
    report   TEXT NOT NULL
);
CREATE INDEX check_results_name_finished ON check_results (name, finished);
