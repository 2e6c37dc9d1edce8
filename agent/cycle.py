"""The collection cycle, and the extension points the rest of the agent plugs into.

One cycle::

    due collectors (collector.runner.Runner, concurrently, with deadlines)
      -> samples of every collector's latest run + self-metrics + agent metrics
         + what the stages export (``stage.samples()``)
      -> snapshot for /metrics (rendered once)
      -> stages, in order: ``stage(samples, now)``

Extension points (the rules engine, ticketing and the daily checks use these):

* **Stages.** An object with ``__call__(samples: list[Sample], now: float)``;
  optionally ``samples() -> list[Sample]`` (metrics it exports, appended to
  the next snapshot), ``routes() -> list[Route]`` (HTTP endpoints, see
  ``agent.exporter``), ``before_check()`` (called before a named check's
  collection: a stage that skips cycles, as the rules stage between
  evaluations, does its work at that one) and ``close()``. ``samples`` passed to a stage is the
  full current view: the latest samples of every enabled collector. A stage
  that raises is logged and the next stage still runs.
* **Check handlers.** ``cycle.on_check("morning", handler)`` with
  ``handler(run: CheckRun, samples: list[Sample], now: float) -> None``
  runs after the named check's collection (all enabled collectors, stages
  included); this is where the morning/evening checklist and the weekly
  report attach. A handler that raises marks the run ``failed``.
* **Components.** A module listed in :data:`COMPONENT_MODULES` defines
  ``setup(cycle: Cycle) -> None`` and uses ``cycle.config``,
  ``cycle.store``, ``cycle.add_stage``, ``cycle.add_route`` and
  ``cycle.on_check``. On a config reload the cycle is rebuilt from scratch
  (``close()`` is called on the old stages): keep durable state in the
  store, not in memory.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.config import Config
from agent.exporter import Route
from agent.schedule import Due
from agent.store import Store, StoreKeyValue
from collector.exposition import render
from collector.model import Sample, counter
from collector.registry import Context, Paths, discover, enabled
from collector.runner import Job, Result, Runner, self_metrics

log = logging.getLogger("opsagent.cycle")

# Modules with ``setup(cycle)``, in the order their stages run. Add yours here.
COMPONENT_MODULES: tuple[str, ...] = (
    "agent.rules_stage",
    "agent.evidence",  # the collectors' evidence onto firing alerts, before ticketing
    "agent.tickets_stage",
    "agent.checks_stage",
)

CYCLES = counter("opsagent_collection_cycles_total", "Collection cycles run since the agent started.")
CHECK_RUNS = counter(
    "opsagent_check_runs_total", "Named check runs since the agent started, by check and status."
)


class Stage(Protocol):
    """A step after collection: ``stage(samples, now)``."""

    def __call__(self, samples: list[Sample], now: float) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckRun:
    """One run of a named check, as handlers see it."""

    id: int
    name: str
    scheduled: float
    started: float


CheckHandler = Callable[[CheckRun, list[Sample], float], None]


def build_jobs(config: Config, only: list[str] | None = None) -> list[Job]:
    """Runner jobs for the enabled collectors (or exactly ``only``, enabled or not).

    A collector section may override ``interval`` and ``timeout``.
    """
    jobs: list[Job] = []
    for name, reg in discover().items():
        section = config.collector_section(name)
        if only is not None:
            if name not in only:
                continue
        elif not enabled(reg, section):
            continue
        try:
            coll = reg.factory(section)
        except Exception as e:  # a collector that cannot start must not stop the others
            why = f"{type(e).__name__}: {e}"
            log.error("collector cannot start", extra={"collector": name, "error": why})
            continue
        interval = getattr(section, "interval", None) or config.schedule.interval
        timeout = getattr(section, "timeout", None) or config.schedule.timeout
        jobs.append(Job(name, coll, section, float(interval), float(timeout)))
    return jobs


class Cycle:
    """Runs collections, publishes the snapshot, feeds the stages and runs named checks."""

    def __init__(
        self,
        config: Config,
        store: Store,
        publish: Callable[[bytes], None],
        agent_samples: Callable[[float], list[Sample]] = lambda now: [],
        paths: Paths | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ):
        self.config = config
        self.store = store
        self.publish = publish
        self.agent_samples = agent_samples
        self.paths = paths or Paths()
        self.stages: list[Any] = []
        self.routes: list[Route] = []
        self.check_handlers: dict[str, list[CheckHandler]] = {}
        self.latest: dict[str, Result] = {}
        self.cycles = 0
        self.check_counts: dict[tuple[str, str], int] = {}
        self.runner = Runner(build_jobs(config), self._context, cancelled=cancelled)
        self.instance = config.agent.instance_name  # gethostname() once, not per collector run

    # -- wiring

    def add_stage(self, stage: Any) -> None:
        """Append a stage (see the module docstring); its ``routes()`` are served too."""
        self.stages.append(stage)
        routes = getattr(stage, "routes", None)
        if callable(routes):
            self.routes.extend(routes())

    def add_route(self, route: Route) -> None:
        """Serve an HTTP route (see ``agent.exporter``)."""
        self.routes.append(route)

    def on_check(self, name: str, handler: CheckHandler) -> None:
        """Run ``handler`` after each run of the named check."""
        self.check_handlers.setdefault(name, []).append(handler)

    def load_components(self, modules: tuple[str, ...] = COMPONENT_MODULES) -> None:
        """Call ``setup(self)`` of each component module."""
        for name in modules:
            importlib.import_module(name).setup(self)

    def _context(self, job: Job) -> Context:
        return Context(
            config=job.section,
            paths=self.paths,
            instance=self.instance,
            state=StoreKeyValue(self.store, f"collector/{job.name}"),
        )

    # -- running

    def next_due_in(self, mono: float) -> float:
        """Seconds until the next collector is due (by the monotonic clock)."""
        if not self.runner.jobs:
            return 3600.0
        return max(0.0, min(j.last_start + j.interval for j in self.runner.jobs.values()) - mono)

    def collect(self, names: list[str] | None, now: float) -> list[Sample]:
        """Run the named collectors (None: all), publish the snapshot, run the stages."""
        for res in self.runner.run(names):
            # a copy: a timed-out collector's thread may still write to its Result later
            self.latest[res.name] = dataclasses.replace(res, samples=list(res.samples))
        self.cycles += 1
        samples = self.snapshot(now)
        for stage in self.stages:
            try:
                stage(samples, now)
            except Exception:
                log.exception("stage failed", extra={"stage": type(stage).__name__})
        return samples

    def snapshot(self, now: float) -> list[Sample]:
        """Build the current view, render it once and publish it to /metrics."""
        results = [self.latest[n] for n in self.runner.jobs if n in self.latest]
        samples: list[Sample] = []
        for r in results:
            samples.extend(r.samples)
        samples.extend(self_metrics(results, now))
        samples.append(Sample(CYCLES.name, {}, float(self.cycles), now))
        for (name, status), n in sorted(self.check_counts.items()):
            samples.append(Sample(CHECK_RUNS.name, {"check": name, "status": status}, float(n), now))
        samples.extend(self.agent_samples(now))
        for stage in self.stages:
            extra = getattr(stage, "samples", None)
            if callable(extra):
                try:
                    samples.extend(extra())
                except Exception:
                    log.exception("stage metrics failed", extra={"stage": type(stage).__name__})
        self.publish(render(samples).encode())
        return samples

    def run_check(self, due: Due, clock: Callable[[], float] = time.time) -> str:
        """Run a named check: all enabled collectors, the stages, then its handlers; record it."""
        started = clock()
        with self.store.tx() as db:
            cur = db.execute(
                "INSERT INTO check_runs (name, scheduled, started, status) VALUES (?, ?, ?, 'running')",
                (due.name, due.scheduled, started),
            )
            run = CheckRun(int(cur.lastrowid or 0), due.name, due.scheduled, started)
        log.info("check started", extra={"check": due.name, "late_seconds": round(due.late, 1)})
        status, error = "ok", None
        for stage in self.stages:
            prepare = getattr(stage, "before_check", None)
            if callable(prepare):
                prepare()
        try:
            samples = self.collect(None, started)
            for handler in self.check_handlers.get(due.name, []):
                handler(run, samples, clock())
        except Exception as e:
            status, error = "failed", f"{type(e).__name__}: {e}"
            log.exception("check failed", extra={"check": due.name})
        with self.store.tx() as db:
            db.execute(
                "UPDATE check_runs SET finished = ?, status = ?, error = ? WHERE id = ?",
                (clock(), status, error, run.id),
            )
        key = (due.name, status)
        self.check_counts[key] = self.check_counts.get(key, 0) + 1
        self.snapshot(clock())  # so opsagent_check_runs_total shows this run now
        log.info("check finished", extra={"check": due.name, "status": status})
        return status

    def close(self) -> None:
        """Close the stages and the runner's workers (on reload and at shutdown)."""
        self.runner.close()
        for stage in self.stages:
            close = getattr(stage, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    log.exception("stage close failed", extra={"stage": type(stage).__name__})


# -- check run records


def last_check_runs(store: Store) -> dict[str, float]:
    """The latest scheduled time each named check ran (or was skipped) for."""
    with store.read() as db:
        rows = db.execute("SELECT name, MAX(scheduled) AS s FROM check_runs GROUP BY name").fetchall()
    return {str(r["name"]): float(r["s"]) for r in rows}


def record_skipped(store: Store, due: Due, now: float, grace: float) -> None:
    """Record an occurrence missed by more than the grace time, so it is not considered again."""
    with store.tx() as db:
        db.execute(
            "INSERT INTO check_runs (name, scheduled, started, finished, status, error)"
            " VALUES (?, ?, ?, ?, 'skipped', ?)",
            (due.name, due.scheduled, now, now, f"missed by {due.late:.0f}s (misfire_grace {grace:.0f}s)"),
        )


def mark_interrupted(store: Store, now: float) -> int:
    """Runs left 'running' by a previous process that died; returns how many."""
    with store.tx() as db:
        cur = db.execute(
            "UPDATE check_runs SET status = 'interrupted', finished = ? WHERE status = 'running'", (now,)
        )
        return int(cur.rowcount)
