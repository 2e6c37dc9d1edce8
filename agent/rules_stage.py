"""The rules stage of the cycle: samples -> history -> rule evaluation -> alerts.

After each evaluation the stage holds the alerts in ``.alerts`` (pending,
firing, and the ones resolved this time) and ``.actionable`` (what
ticketing acts on: firing or resolved, not inhibited); later stages find it
as ``cycle.rules_stage``. It exports ``ALERTS`` and ``ALERTS_FOR_STATE``
as Prometheus does, plus its own evaluation metrics.

Rule files are read in ``setup``: a bad one raises ConfigError, the
daemon keeps the running cycle, so a reload with a bad rule file keeps the
old rules running. Across a good reload the new stage shares the running
stage's history and, at its first evaluation (when the old cycle is gone),
takes over the alert state of every unchanged rule, so ``for`` timers and
forecasts do not start over.

Across a restart the state goes through the store: the pending and firing
alerts are written to ``alert_state`` after an evaluation that changed them
(an alert started, fired, changed level or ended; otherwise only their
``last_seen``, once a minute), read once at start-up and handed to the
evaluator's ``restore`` at the first evaluation (Prometheus' ALERTS_FOR_STATE
restoration; ``rules.for_outage_tolerance``, ``rules.for_grace_period``).
"""

from __future__ import annotations

import glob
import json
import logging
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.model import Sample, counter, gauge
from rules.evaluator import RuleEvaluator, SavedAlert, actionable, alert_samples
from rules.loader import RuleSet, RulesOptions, load_files, pack_paths
from rules.model import Alert, fingerprint

if TYPE_CHECKING:
    from agent.config import Config
    from agent.cycle import Cycle
    from agent.store import Store

log = logging.getLogger("opsagent.rules")

EVAL_DURATION = gauge(
    "opsagent_rules_evaluation_duration_seconds", "How long the last evaluation of all rules took."
)
EVAL_FAILURES = counter(
    "opsagent_rules_evaluation_failures_total", "Rule evaluations that failed (the rule kept its alerts)."
)
RULES_LOADED = gauge("opsagent_rules_loaded", "Alerting and recording rules loaded.")
LAST_EVAL = gauge("opsagent_rules_last_evaluation_timestamp_seconds", "When rules were last evaluated.")

# The running stage per state file: a reloaded configuration's stage takes over from it.
_running: dict[str, RulesStage] = {}

# While alerts stay as they are, their rows' last_seen is refreshed this often: after a
# crash the outage counts from at most this much before it (a clean stop writes it exactly).
LAST_SEEN_EVERY = 60.0


def read_alert_states(store: Store) -> list[SavedAlert]:
    """The alerts the previous run left pending or firing (``alert_state``); a bad row is skipped."""
    with store.read() as db:
        rows = db.execute(
            "SELECT rule_file, rule_group, rule_name, rule_expr, labels, state, active_at, fired_at,"
            " level, last_seen FROM alert_state"
        ).fetchall()
    out: list[SavedAlert] = []
    for r in rows:
        try:
            labels = json.loads(r["labels"])
            if not isinstance(labels, dict):
                raise ValueError("labels are not an object")
        except ValueError as e:
            log.warning("alert state row skipped", extra={"rule": r["rule_name"], "error": str(e)})
            continue
        out.append(SavedAlert(
            (r["rule_file"], r["rule_group"], r["rule_name"], r["rule_expr"]),
            {str(k): str(v) for k, v in labels.items()}, r["state"], float(r["active_at"]),
            None if r["fired_at"] is None else float(r["fired_at"]), r["level"], float(r["last_seen"]),
        ))
    return out


def write_alert_states(store: Store, alerts: list[SavedAlert]) -> None:
    """Replace ``alert_state`` with ``alerts`` in one transaction."""
    rows = [(*a.rule, fingerprint(a.labels), json.dumps(dict(a.labels), sort_keys=True), a.state,
             a.active_at, a.fired_at, a.level, a.last_seen) for a in alerts]
    with store.tx() as db:
        db.execute("DELETE FROM alert_state")
        db.executemany("INSERT INTO alert_state (rule_file, rule_group, rule_name, rule_expr, fingerprint,"
                       " labels, state, active_at, fired_at, level, last_seen)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def touch_alert_states(store: Store, now: float) -> None:
    """Mark every saved alert as still active at ``now``."""
    with store.tx() as db:
        db.execute("UPDATE alert_state SET last_seen = ? WHERE last_seen < ?", (now, now))


def rules_options(cfg: Config) -> RulesOptions:
    """RulesOptions from the ``rules:`` config section."""
    r = cfg.rules
    return RulesOptions(
        severity_levels=dict(r.severity_levels),
        impact_matrix={k: dict(v) for k, v in r.impact_matrix.items()},
        default_tier=r.default_tier,
        language=r.language or cfg.agent.language,
        flapping=r.flapping.enabled,
        flap_window=r.flapping.window,
        flap_high=r.flapping.high,
        flap_low=r.flapping.low,
        disabled=frozenset(r.disabled),
        honor_group_interval=True,
    )


def active_rule_paths(cfg: Config) -> list[Path]:
    """The default packs (unless disabled) and the configured rule files, globs expanded.

    A glob matching nothing adds nothing (as in Prometheus); a plain path is
    kept, so a missing file is reported by the loader.
    """
    r = cfg.rules
    paths: list[Path] = list(pack_paths(frozenset(r.disabled))) if r.packs else []
    base = Path(cfg.source).parent if cfg.source else Path.cwd()
    for pattern in r.files:
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        if glob.has_magic(full):
            paths += [Path(p) for p in sorted(glob.glob(full))]
        else:
            paths.append(Path(full))
    return paths


def load_rules(cfg: Config) -> RuleSet:
    """Load the active rules of a configuration; ConfigError names every problem."""
    return load_files(active_rule_paths(cfg), rules_options(cfg))


class RulesStage:
    """Appends each cycle's samples to the history and evaluates the rules when due."""

    def __init__(
        self,
        ruleset: RuleSet,
        options: RulesOptions,
        retention: float = 6 * 3600,
        interval: float = 0.0,
        previous: RulesStage | None = None,
        key: str = "",
        target_labels: Mapping[str, str] | None = None,
        slack: float = 0.0,
        store: Store | None = None,
        restore: list[SavedAlert] | None = None,
        outage_tolerance: float = 3600.0,
        grace: float = 600.0,
    ):
        from rules.evaluator import history_needs
        from rules.history import History

        self.options = options
        self.interval = interval
        # cycles arrive a few ms early or late: an evaluation due within ``slack``
        # (half a collection interval) runs now rather than one cycle later
        self.slack = slack
        self._force = False
        self.retention = retention
        self.key = key
        self.target_labels = dict(target_labels or {})
        # sharing the running stage's history is safe: only one of the two is ever called
        # only what the rules read is kept of each series (6 h of 15 s points of all ~400
        # series would be ~10 MB; the rules read 6 h of a few and minutes of the rest)
        self.keep = history_needs(ruleset)
        self.history: Any = previous.history if previous is not None else History(retention, self.keep)
        self.evaluator = RuleEvaluator(ruleset, options)
        self._previous = previous
        self.alerts: list[Alert] = list(previous.alerts) if previous is not None else []
        self.last_eval: float | None = previous.last_eval if previous is not None else None
        # alert state across restarts: None = not kept (no store)
        self.store = store
        self._to_restore = restore
        self.outage_tolerance = outage_tolerance
        self.grace = grace
        self._saved_changes = -1  # the evaluator's change count last written; -1: write at once
        self._saved_at = 0.0
        self._saved_any = False

    @property
    def ruleset(self) -> RuleSet:
        return self.evaluator.ruleset

    @property
    def actionable(self) -> list[Alert]:
        """Firing and just-resolved alerts that are not inhibited: what ticketing acts on."""
        return actionable(self.alerts)

    def __call__(self, samples: list[Sample], now: float) -> None:
        if self._previous is not None or _running.get(self.key) is not self:
            self._take_over()
        if self._to_restore is not None:
            n = self.evaluator.restore(self._to_restore, now, self.outage_tolerance, self.grace)
            if self._to_restore:
                log.info("alert state restored", extra={"saved": len(self._to_restore), "resumable": n})
            self._to_restore = None
        self.history.append(samples, now, source="cycle", target_labels=self.target_labels)
        due = self._force or self.last_eval is None or (
            now - self.last_eval >= self.interval - self.slack - 1e-6
        )
        self._force = False
        if not due:
            # not due: nothing resolves twice, the active alerts stand
            self.alerts = [a for a in self.alerts if a.state != "resolved"]
            return
        before = self.evaluator.failures_total
        self.alerts = self.evaluator.evaluate(self.history, now)
        self.last_eval = now
        for err in self.evaluator.last_errors:
            log.error("rule evaluation failed", extra={"error": err})
        if self.evaluator.failures_total > before:
            log.warning("rules evaluated with failures",
                        extra={"failures": self.evaluator.failures_total - before})
        self._save(now)

    def _save(self, now: float) -> None:
        """Write the alert state when it changed, else refresh last_seen at most once a minute."""
        if self.store is None:
            return
        try:
            if self.evaluator.changes != self._saved_changes:
                saved = self.evaluator.saved_alerts(now)
                write_alert_states(self.store, saved)
                self._saved_changes, self._saved_at = self.evaluator.changes, now
                self._saved_any = bool(saved)
            elif self._saved_any and now - self._saved_at >= LAST_SEEN_EVERY:
                touch_alert_states(self.store, now)
                self._saved_at = now
        except sqlite3.Error as e:  # a full disk must not stop alerting; the next change retries
            self._saved_changes = -1
            log.error("alert state not saved", extra={"error": str(e)})

    def before_check(self) -> None:
        """Evaluate at the next cycle whether due or not: a named check reports current alerts."""
        self._force = True

    def samples(self) -> list[Sample]:
        """ALERTS, ALERTS_FOR_STATE and the stage's own metrics."""
        ts = self.last_eval or 0.0
        out = alert_samples(self.alerts, ts)
        out.append(Sample(EVAL_DURATION.name, {}, self.evaluator.last_duration, ts))
        out.append(Sample(EVAL_FAILURES.name, {}, float(self.evaluator.failures_total), ts))
        out.append(Sample(RULES_LOADED.name, {}, float(len(self.ruleset)), ts))
        if self.last_eval is not None:
            out.append(Sample(LAST_EVAL.name, {}, self.last_eval, ts))
        return out

    def _take_over(self) -> None:
        """First call of this stage: the old cycle is gone; adopt its alert state."""
        if self._previous is not None:
            self.evaluator.adopt(self._previous.evaluator)
            self.evaluator.failures_total = self._previous.evaluator.failures_total
            if self._to_restore is None:  # reloaded before the start-up state was applied
                self._to_restore = self._previous._to_restore
            self._previous = None
        self.history.retention = self.retention
        self.history.set_keep(self.keep)
        _running[self.key] = self

    def close(self) -> None:
        """Record when the alerts were last seen active (a stop); a reloaded stage takes over the rest."""
        if self.store is None or not self._saved_any or self.last_eval is None:
            return
        if self.last_eval > self._saved_at:
            try:
                touch_alert_states(self.store, self.last_eval)
            except sqlite3.Error as e:
                log.error("alert state not saved", extra={"error": str(e)})


def setup(cycle: Cycle) -> None:
    """Add the rules stage to the cycle (component entry point, see agent.cycle)."""
    cfg = cycle.config
    key = str(cfg.agent.state_file)
    ruleset = load_rules(cfg)  # ConfigError: the daemon keeps the running cycle and its rules
    previous = _running.get(key)
    store = getattr(cycle, "store", None)
    # start-up: resume what the previous run left; a reload hands the state over in-process
    saved = read_alert_states(store) if store is not None and previous is None else None
    stage = RulesStage(
        ruleset, rules_options(cfg), retention=float(cfg.rules.history),
        interval=float(cfg.rules.evaluation_interval), previous=previous, key=key,
        target_labels={"instance": cfg.agent.instance_name},
        slack=float(cfg.schedule.interval) / 2, store=store, restore=saved,
        outage_tolerance=float(cfg.rules.for_outage_tolerance), grace=float(cfg.rules.for_grace_period),
    )
    cycle.rules_stage = stage  # type: ignore[attr-defined]
    cycle.add_stage(stage)
    log.info("rules loaded", extra={"rules": len(ruleset), "files": len(ruleset.files)})


def check_rule_files(cfg: Config) -> None:
    """Validate the configuration's rule files (raises ConfigError); used by load_config."""
    load_rules(cfg)
