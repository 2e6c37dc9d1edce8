"""The framework owns the run loop: concurrency, deadlines, exception capture, self-metrics."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collector.model import Evidence, Sample, gauge
from collector.registry import Collector, CollectorFailure, Context, NoData

log = logging.getLogger("opsagent.collector")

SUCCESS = gauge("opsagent_collector_success", "Whether the collector's last run succeeded (1) or failed (0).")
DURATION = gauge("opsagent_collector_duration_seconds", "How long the collector's last run took.")


@dataclass
class Result:
    """The outcome of one collector run."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    success: bool = False
    duration: float = 0.0
    error: str | None = None


@dataclass
class Job:
    """A configured collector instance and how often it runs."""

    name: str
    collector: Collector
    section: Any
    interval: float
    timeout: float
    last_start: float = float("-inf")
    # set while a run is queued or running (a hung run keeps it set until it returns)
    running: bool = False


@dataclass
class _Task:
    job: Job
    ctx: Context
    result: Result
    started: float | None = None
    done: bool = False


class Runner:
    """Runs due collectors, each with a deadline, never two runs of one at once.

    Collectors run on a small pool of reused worker threads, one after
    another while they are quick: most take well under a millisecond, and
    a thread per collector per cycle (or fourteen threads contending for
    the GIL) cost more CPU than the collecting itself. When every worker
    has been busy with one collector for ``stall`` seconds and others are
    waiting, another worker is started, so a slow or hung collector delays
    the rest by at most ``stall``. A collector that raises is reported as
    failed; one that overruns its deadline (counted from its own start) is
    reported as timed out and not started again until it returns; its
    worker is lost to the pool until then.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        make_context: Callable[[Job], Context],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cancelled: Callable[[], bool] = lambda: False,
        stall: float = 0.2,
    ):
        self.jobs = {j.name: j for j in jobs}
        self.make_context = make_context
        self.clock = clock
        self.monotonic = monotonic
        # polled while waiting, so a shutdown does not wait for slow collectors' deadlines
        self.cancelled = cancelled
        self.stall = stall
        self._cond = threading.Condition()
        self._queue: deque[_Task] = deque()
        self._idle = 0
        self._busy: list[_Task] = []  # tasks being run by a worker right now
        self._closed = False
        self.workers_started = 0

    def due(self, now: float) -> list[str]:
        """Names of jobs whose interval has elapsed (by the monotonic clock)."""
        if not any(now - j.last_start >= j.interval - 1e-3 for j in self.jobs.values()):
            return []
        # A job due within half the shortest interval joins this batch rather than
        # making a cycle of its own a few seconds later; run early, it re-anchors its
        # grid on this batch (see run), so jobs that drifted apart line up again.
        slack = max(1e-3, min(j.interval for j in self.jobs.values()) / 2)
        return [n for n, j in self.jobs.items() if now - j.last_start >= j.interval - slack]

    def run(self, names: Iterable[str] | None = None) -> list[Result]:
        """Run the named jobs (default: all) now and wait for each until its deadline."""
        selected = [self.jobs[n] for n in (names if names is not None else self.jobs)]
        tasks: list[_Task] = []
        results: list[Result] = []
        # one start time for the batch keeps jobs of equal interval due together
        batch_start = self.monotonic()
        with self._cond:
            for job in selected:
                res = Result(job.name)
                results.append(res)
                if job.running:
                    res.error = "previous run still in progress"
                    log.warning("collector skipped", extra={"collector": job.name, "reason": res.error})
                    continue
                job.running = True
                # Stay on the job's grid (previous start + interval) when this run is at
                # most one interval late: a batch starting a few ms late (the previous
                # cycle's work, select() rounding) would otherwise shift the fast jobs
                # off the grid of the slow ones (1m, 5m), which then ran as cycles of
                # their own -- a whole extra snapshot and rules/tickets pass each time.
                # Early (a named check) or long late: a new grid from this batch.
                on_grid = job.last_start + job.interval
                job.last_start = on_grid if -1e-3 <= batch_start - on_grid < job.interval else batch_start
                task = _Task(job, self.make_context(job), res)
                tasks.append(task)
                self._queue.append(task)
            if self._queue and self._idle == 0:
                self._start_worker()
            self._cond.notify()
        self._wait(tasks)
        return results

    def _wait(self, tasks: list[_Task]) -> None:
        pending = list(tasks)
        with self._cond:
            while pending:
                if self.cancelled():
                    for t in pending:
                        self._give_up(t, "cancelled at shutdown")
                    return
                now = self.monotonic()
                next_check = now + 0.25
                still: list[_Task] = []
                for t in pending:
                    if t.done:
                        continue
                    if t.started is not None:
                        deadline = t.started + t.job.timeout
                        if now >= deadline:
                            self._give_up(t, f"timed out after {t.job.timeout:g}s")
                            extra = {"collector": t.job.name, "timeout": t.job.timeout}
                            log.error("collector timed out", extra=extra)
                            continue
                        next_check = min(next_check, deadline)
                    still.append(t)
                pending = still
                if not pending:
                    return
                if self._queue and self._idle == 0:
                    oldest = min((b.started or now for b in self._busy), default=now)
                    if now - oldest >= self.stall or not self._busy:
                        self._start_worker()
                    else:
                        next_check = min(next_check, oldest + self.stall)
                self._cond.wait(max(0.0, next_check - now))

    def close(self) -> None:
        """Let the idle workers exit (on reload and shutdown); busy ones exit when done."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _give_up(self, t: _Task, why: str) -> None:
        res = t.result
        res.success = False
        res.samples = []
        res.duration = self.monotonic() - t.started if t.started is not None else 0.0
        res.error = why
        if t.started is None:  # never picked up: take it out of the queue
            try:
                self._queue.remove(t)
            except ValueError:
                pass
            t.job.running = False
        t.done = True  # a late finish must not overwrite the reported outcome

    def _start_worker(self) -> None:
        self.workers_started += 1
        th = threading.Thread(target=self._work, name=f"collector-{self.workers_started}", daemon=True)
        self._idle += 1
        th.start()

    def _work(self) -> None:
        with self._cond:
            while True:
                while not self._queue:
                    # an extra worker started for a stall goes away when idle a while
                    timed_out = not self._cond.wait(60.0)
                    if self._closed or (timed_out and not self._queue and self._idle > 1):
                        self._idle -= 1
                        return
                task = self._queue.popleft()
                self._idle -= 1
                task.started = self.monotonic()
                self._busy.append(task)
                self._cond.release()
                try:
                    res = Result(task.job.name)
                    self._run_one(task.job, task.ctx, res, task.started)
                finally:
                    self._cond.acquire()
                self._busy.remove(task)
                task.job.running = False
                if not task.done:
                    r = task.result
                    r.samples, r.evidence, r.success = res.samples, res.evidence, res.success
                    r.duration, r.error = res.duration, res.error
                    task.done = True
                self._idle += 1
                if not self._queue:
                    # the batch is drained: wake the runner once, not once per collector
                    self._cond.notify_all()
                if self._closed:
                    self._idle -= 1
                    return

    def _run_one(self, job: Job, ctx: Context, res: Result, t0: float) -> None:
        samples: list[Sample] = []
        try:
            ts = ctx.now()
            for s in job.collector.collect(ctx):
                samples.append(s if s.ts else Sample(s.name, s.labels, s.value, ts))
            res.success = True
        except NoData:
            res.success = True
        except CollectorFailure as e:
            res.error = str(e)
            log.error("collector failed", extra={"collector": job.name, "error": res.error})
        except Exception as e:
            res.error = f"{type(e).__name__}: {e}"
            log.exception("collector crashed", extra={"collector": job.name})
        res.duration = self.monotonic() - t0
        res.samples = samples
        res.evidence = list(ctx.evidence)


def self_metrics(results: Iterable[Result], ts: float) -> list[Sample]:
    """``opsagent_collector_success`` and ``..._duration_seconds`` for each result."""
    out: list[Sample] = []
    for r in results:
        lab = {"collector": r.name}
        out.append(Sample(SUCCESS.name, lab, 1.0 if r.success else 0.0, ts))
        out.append(Sample(DURATION.name, lab, r.duration, ts))
    return out
