"""The collector runner: reused workers, deadlines, a hung collector delays nobody."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from collector.model import Sample
from collector.registry import CollectorFailure, Context, EmptyConfig
from collector.runner import Job, Runner


class Quick:
    name = "quick"

    def collect(self, ctx: Context) -> Iterator[Sample]:
        yield Sample("up", {}, 1.0)


class Hangs:
    name = "hangs"

    def __init__(self) -> None:
        self.release = threading.Event()

    def collect(self, ctx: Context) -> Iterator[Sample]:
        self.release.wait(30)
        yield Sample("late", {}, 1.0)


class Fails:
    name = "fails"

    def collect(self, ctx: Context) -> Iterator[Sample]:
        raise CollectorFailure("no such thing")


def job(name: str, coll: object, timeout: float = 5) -> Job:
    return Job(name, coll, EmptyConfig(), interval=15, timeout=timeout)  # type: ignore[arg-type]


def test_quick_collectors_reuse_one_worker_thread() -> None:
    runner = Runner([job(f"q{i}", Quick()) for i in range(14)], lambda j: Context(config=None))
    for _ in range(5):
        results = runner.run()
        assert [r.success for r in results] == [True] * 14
        assert all(r.samples[0].name == "up" for r in results)
    assert runner.workers_started == 1
    runner.close()


def test_hung_collector_times_out_and_does_not_delay_the_others() -> None:
    hangs = Hangs()
    quick = [job(f"q{i}", Quick()) for i in range(5)]
    jobs = [job("hangs", hangs, timeout=1.0), *quick, job("fails", Fails())]
    runner = Runner(jobs, lambda j: Context(config=None), stall=0.2)
    t0 = time.monotonic()
    results = {r.name: r for r in runner.run()}
    assert 0.9 < time.monotonic() - t0 < 3
    assert results["hangs"].error == "timed out after 1s" and not results["hangs"].success
    assert all(results[f"q{i}"].success for i in range(5))
    assert not results["fails"].success and results["fails"].error == "no such thing"
    # still hung at the next tick: not started twice, the others run normally
    again = {r.name: r for r in runner.run()}
    assert again["hangs"].error == "previous run still in progress"
    assert all(again[f"q{i}"].success for i in range(5))
    hangs.release.set()
    time.sleep(0.2)
    late = {r.name: r for r in runner.run()}
    # the late finish of the timed-out run did not overwrite anything; the next run is normal
    assert late["hangs"].success and late["hangs"].samples[0].name == "late"
    runner.close()


def test_cancelled_runner_returns_at_once() -> None:
    hangs = Hangs()
    runner = Runner([job("hangs", hangs, timeout=20)], lambda j: Context(config=None), cancelled=lambda: True)
    t0 = time.monotonic()
    (res,) = runner.run()
    assert time.monotonic() - t0 < 1 and res.error == "cancelled at shutdown"
    hangs.release.set()
    runner.close()
