"""Named checks in the daemon and on demand, and their stored reports.

* In the daemon, :func:`setup` registers a handler for every configured
  check name (``schedule.checks`` and ``checks.profiles``). When the
  scheduler runs a check, the cycle collects, the rules stage evaluates
  over the daemon's live history (so ``for:`` is honoured), and the handler
  builds the checklist from the current alerts, the live tickets and the
  collection's samples and evidence, and stores it beside the check_runs row.
* :func:`run_once` is ``opsagent check NAME``: it runs the profile's
  collectors twice, ``checks.sample_gap`` apart (so ``rate()`` has two
  points), evaluates the rules over those two points with ``for:`` and
  ``keep_firing_for`` set to zero -- a one-shot check reports the state
  now and cannot wait -- and stores the report as a run of origin ``cli``.
  It reads the daemon's collector state but never writes it, so a check
  run by hand neither moves the daemon's log positions nor records a
  config-file version twice; it opens no tickets and sends nothing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import TYPE_CHECKING, Any

from agent.checks import CheckReport, build_report, rule_areas, rule_files
from agent.store import Store, StoreKeyValue
from collector.model import Evidence, Sample
from collector.registry import Context, MemoryKeyValue, Paths

if TYPE_CHECKING:
    from agent.config import CheckProfile, Config
    from agent.cycle import CheckRun, Cycle

log = logging.getLogger("opsagent.checks")

LIVE_TICKETS = ("open", "acknowledged", "recovered")


# ---------------------------------------------------------------- stored runs


def save_report(store: Store, run_id: int, report: CheckReport) -> None:
    """Store the report of check run ``run_id``."""
    with store.tx() as db:
        _insert_result(db, run_id, report)


def _insert_result(db: Any, run_id: int, report: CheckReport) -> None:
    s = report.summary
    db.execute(
        "INSERT OR REPLACE INTO check_results (run_id, name, origin, status, ok, warn, fail, unknown,"
        " urgent, finished, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            run_id, report.check, report.origin, report.status, s["OK"], s["WARN"], s["FAIL"],
            s["UNKNOWN"], s["urgent"], report.finished,
            json.dumps(report.to_json(), ensure_ascii=False, sort_keys=True),
        ),
    )


def record_run(store: Store, report: CheckReport) -> int:
    """Store an on-demand run: its check_runs row and its report, in one transaction; returns the id.

    The run counts for the scheduler like a scheduled one (scheduled = started):
    a morning check done by hand after 08:00 is not run again by a daemon that
    was down at 08:00.
    """
    with store.tx() as db:
        cur = db.execute(
            "INSERT INTO check_runs (name, scheduled, started, finished, status) VALUES (?, ?, ?, ?, 'ok')",
            (report.check, report.started, report.started, report.finished),
        )
        run_id = int(cur.lastrowid or 0)
        _insert_result(db, run_id, report)
    return run_id


def list_runs(store: Store, limit: int = 50, name: str | None = None) -> list[dict[str, Any]]:
    """Past check runs, newest first, with their report counts when there is a report."""
    sql = (
        "SELECT r.id, r.name, r.scheduled, r.started, r.finished, r.status AS run_status, r.error,"
        " c.origin, c.status, c.ok, c.warn, c.fail, c.unknown, c.urgent"
        " FROM check_runs r LEFT JOIN check_results c ON c.run_id = r.id"
    )
    args: list[Any] = []
    if name:
        sql += " WHERE r.name = ?"
        args.append(name)
    sql += " ORDER BY r.started DESC, r.id DESC LIMIT ?"
    with store.read() as db:
        return [dict(r) for r in db.execute(sql, [*args, limit])]


def load_report(store: Store, run_id: int) -> CheckReport | None:
    """The stored report of one run, or None."""
    with store.read() as db:
        row = db.execute("SELECT report FROM check_results WHERE run_id = ?", (run_id,)).fetchone()
    return CheckReport.from_json(json.loads(row["report"])) if row else None


def previous_state(store: Store) -> Mapping[str, Any]:
    """The ``state`` of the latest stored report (log counters for "×N since the last check")."""
    with store.read() as db:
        row = db.execute(
            "SELECT report FROM check_results ORDER BY finished DESC, run_id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return {}
    try:
        state = json.loads(row["report"]).get("state", {})
    except (ValueError, AttributeError):
        return {}
    return state if isinstance(state, dict) else {}


def live_tickets(store: Store) -> list[dict[str, Any]]:
    """Tickets not yet resolved, newest first."""
    from agent.tickets import TicketBook

    return TicketBook(store).list_tickets(status=LIVE_TICKETS)


# ---------------------------------------------------------------- in the daemon


def report_zone(config: Config) -> tzinfo:
    from agent.daemon import system_zone

    return system_zone(config.agent.timezone)


def report_language(config: Config) -> str:
    return config.rules.language or config.agent.language


class ScheduledCheck:
    """The handler of one named check in the daemon: builds and stores its checklist."""

    def __init__(self, cycle: Cycle, name: str):
        self.cycle = cycle
        self.name = name

    def __call__(self, run: CheckRun, samples: list[Sample], now: float) -> None:
        cycle, cfg = self.cycle, self.cycle.config
        profile = cfg.checks.profile(self.name)
        stage = getattr(cycle, "rules_stage", None)
        alerts = list(getattr(stage, "alerts", ()) or ())
        ruleset = getattr(stage, "ruleset", None)
        results = {n: r for n, r in cycle.latest.items() if not profile.collectors or n in profile.collectors}
        if profile.collectors:
            own = {s.key() for r in results.values() for s in r.samples}
            foreign = {s.key() for n, r in cycle.latest.items() if n not in results for s in r.samples}
            samples = [s for s in samples if s.key() in own or s.key() not in foreign]
        evidence = [ev for r in results.values() for ev in r.evidence]
        errors = {n: r.error or "failed" for n, r in results.items() if not r.success}
        report = build_report(
            self.name, profile, samples, alerts, live_tickets(cycle.store),
            started=run.started, finished=now, instance=cfg.agent.instance_name,
            areas=rule_areas(ruleset, cfg.checks.areas) if ruleset is not None else dict(cfg.checks.areas),
            files=rule_files(ruleset) if ruleset is not None else {},
            evidence=evidence, collector_errors=errors, previous_state=previous_state(cycle.store),
            language=report_language(cfg), tz=report_zone(cfg), origin="schedule",
        )
        save_report(cycle.store, run.id, report)
        log.info(
            "check report stored",
            extra={"check": self.name, "status": report.status, "urgent": len(report.urgent)},
        )


def setup(cycle: Cycle) -> None:
    """Register a handler for each configured check name (component entry point, see agent.cycle)."""
    cfg = cycle.config
    for name in sorted(set(cfg.schedule.checks) | set(cfg.checks.profiles)):
        cycle.on_check(name, ScheduledCheck(cycle, name))


# ---------------------------------------------------------------- on demand


class ReadThroughKeyValue:
    """Reads the daemon's collector state, keeps its own writes in memory (and deletions too)."""

    def __init__(self, base: Any):
        self.base = base
        self.mine = MemoryKeyValue()
        self.deleted: set[str] = set()

    def get(self, key: str) -> bytes | None:
        if key in self.deleted:
            return None
        got = self.mine.get(key)
        return got if got is not None else self.base.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.deleted.discard(key)
        self.mine.put(key, value)

    def delete(self, key: str) -> None:
        self.deleted.add(key)
        self.mine.delete(key)

    def keys(self, prefix: str = "") -> list[str]:
        return sorted((set(self.base.keys(prefix)) | set(self.mine.keys(prefix))) - self.deleted)


def instant_rules(ruleset: Any, profile: CheckProfile) -> Any:
    """The rule set for a one-shot run: ``for`` and ``keep_firing_for`` zero, the profile's rules only."""
    from rules.loader import AlertingRule, RuleGroup, RuleSet

    groups = []
    for g in ruleset.groups:
        rules = []
        for r in g.rules:
            if isinstance(r, AlertingRule):
                r = dataclasses.replace(r, for_=0.0, keep_firing_for=0.0)
            rules.append(r)
        groups.append(RuleGroup(g.name, g.file, tuple(rules), None, g.limit))
    return RuleSet(tuple(groups), ruleset.files)


def run_once(
    config: Config,
    name: str,
    store: Store,
    paths: Paths | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> CheckReport:
    """Run the named check now (``opsagent check NAME``) and store it; see the module docstring."""
    from agent.cycle import build_jobs
    from agent.rules_stage import load_rules, rules_options
    from collector.runner import Runner, self_metrics
    from rules.evaluator import RuleEvaluator
    from rules.history import History

    profile = config.checks.profile(name)
    ruleset = load_rules(config)  # a bad rule file is a ConfigError, as for the daemon
    jobs = build_jobs(config)
    if profile.collectors:
        jobs = [j for j in jobs if j.name in profile.collectors]
    states = {j.name: ReadThroughKeyValue(StoreKeyValue(store, f"collector/{j.name}")) for j in jobs}
    runner = Runner(
        jobs,
        lambda job: Context(
            config=job.section, paths=paths or Paths(), clock=clock,
            instance=config.agent.instance_name, state=states[job.name],
        ),
        clock=clock,
    )
    history = History(max(float(config.rules.history), 600.0))
    started = clock()
    evidence: list[Evidence] = []
    results: dict[str, Any] = {}
    gap = float(config.checks.sample_gap)
    for i in range(2 if gap > 0 else 1):
        if i:
            sleep(gap)
        got = runner.run()
        t = clock()
        samples = [s for r in got for s in r.samples]
        samples.extend(self_metrics(got, t))
        history.append(samples, t, source="check", target_labels={"instance": config.agent.instance_name})
        for r in got:
            evidence.extend(r.evidence)
            results[r.name] = r
    now = clock()
    options = rules_options(config)
    evaluator = RuleEvaluator(instant_rules(ruleset, profile), dataclasses.replace(options, flapping=False))
    alerts = evaluator.evaluate(history, now)
    for err in evaluator.last_errors:
        log.warning("rule evaluation failed", extra={"error": err})
    report = build_report(
        name, profile, samples, alerts, live_tickets(store),
        started=started, finished=clock(), instance=config.agent.instance_name,
        areas=rule_areas(ruleset, config.checks.areas), files=rule_files(ruleset),
        evidence=evidence,
        collector_errors={n: r.error or "failed" for n, r in results.items() if not r.success},
        previous_state=previous_state(store), language=report_language(config), tz=report_zone(config),
        origin="cli",
    )
    record_run(store, report)
    return report
