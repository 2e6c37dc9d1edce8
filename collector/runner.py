"""The framework owns the run loop: concurrency, deadlines, exception capture, self-metrics."""

from __future__ import annotations

import logging
import threading
import time
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
    thread: threading.Thread | None = None


class Runner:
    """Runs due collectors concurrently, each with a deadline, never two runs of one at once.

    A collector that raises is reported as failed; one that overruns its
    deadline is reported as timed out and not started again until its
    thread returns.
    """

    def __init__(
        self,
        jobs: Iterable[Job],
        make_context: Callable[[Job], Context],
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        cancelled: Callable[[], bool] = lambda: False,
    ):
        self.jobs = {j.name: j for j in jobs}
        self.make_context = make_context
        self.clock = clock
        self.monotonic = monotonic
        # polled while waiting, so a shutdown does not wait for slow collectors' deadlines
        self.cancelled = cancelled

    def due(self, now: float) -> list[str]:
        """Names of jobs whose interval has elapsed (by the monotonic clock)."""
        return [n for n, j in self.jobs.items() if now - j.last_start >= j.interval - 1e-3]

    def run(self, names: Iterable[str] | None = None) -> list[Result]:
        """Run the named jobs (default: all) now and wait for each until its deadline."""
        selected = [self.jobs[n] for n in (names if names is not None else self.jobs)]
        started: list[tuple[Job, Result, threading.Thread, float]] = []
        results: list[Result] = []
        # one start time for the batch keeps jobs of equal interval due together
        batch_start = self.monotonic()
        for job in selected:
            res = Result(job.name)
            if job.thread is not None and job.thread.is_alive():
                res.error = "previous run still in progress"
                log.warning("collector skipped", extra={"collector": job.name, "reason": res.error})
                results.append(res)
                continue
            ctx = self.make_context(job)
            t0 = self.monotonic()
            job.last_start = batch_start
            th = threading.Thread(
                target=self._run_one, args=(job, ctx, res, t0), name=f"collector-{job.name}", daemon=True
            )
            job.thread = th
            th.start()
            started.append((job, res, th, t0))
        for job, res, th, t0 in started:
            deadline = t0 + job.timeout
            while th.is_alive() and not self.cancelled():
                remaining = deadline - self.monotonic()
                if remaining <= 0:
                    break
                th.join(min(remaining, 0.25))
            if th.is_alive():
                res.success = False
                res.samples = []
                res.duration = self.monotonic() - t0
                if self.cancelled():
                    res.error = "cancelled at shutdown"
                else:
                    res.error = f"timed out after {job.timeout:g}s"
                    log.error("collector timed out", extra={"collector": job.name, "timeout": job.timeout})
            results.append(res)
        return results

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
