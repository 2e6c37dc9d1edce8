-- Pending and firing alerts of the local rules, so a restart resumes their `for`
-- timers (as Prometheus restores ALERTS_FOR_STATE). Rewritten by the rules stage
-- when an alert starts, fires, changes level or ends; read once at start-up.
-- rule_* is the rule's key (file, group, name, expression): a changed rule starts over.
CREATE TABLE alert_state (
    rule_file   TEXT NOT NULL,
    rule_group  TEXT NOT NULL,
    rule_name   TEXT NOT NULL,
    rule_expr   TEXT NOT NULL,
    -- Alertmanager fingerprint of the identifying labels (all but level), as tickets use
    fingerprint TEXT NOT NULL,
    -- the identifying labels, JSON object
    labels      TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('pending', 'firing')),
    active_at   REAL NOT NULL,
    fired_at    REAL,
    level       TEXT,
    -- when the alert was last known active (at most a minute old while the agent runs)
    last_seen   REAL NOT NULL,
    PRIMARY KEY (rule_file, rule_group, rule_name, rule_expr, fingerprint)
) WITHOUT ROWID;
