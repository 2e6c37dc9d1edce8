"""Business success rate (SPEC §6): transactions that succeeded or failed, counted from application logs.

Each configured flow names its log files and what a successful and a failed
transaction look like (RE2 patterns, one line per transaction). Reading,
positions and rotation are the logs collector's (``collector.logs.scan_file``);
this module only decides what a matching line means. A ``reason`` pattern
with one capture group says why a transaction failed, for the success-rate
report; distinct reasons are capped so a bad pattern cannot explode the
series count.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.logs import DEFAULT_EXCLUDE, Encoding, expand, limit_problems, load_state, scan_file
from collector.logscan import Matcher, PatternSpec, Record, record_text
from collector.logstate import FileState
from collector.model import Evidence, Sample, counter, gauge
from collector.registry import Context, register
from collector.schema import Duration, Regex, compile_regex

TRANSACTIONS = counter(
    "opsagent_business_transactions_total", "Business transactions seen in the flow's logs, by outcome."
)
FAILURES = counter(
    "opsagent_business_failures_total", "Failed transactions by reason (from the flow's reason pattern)."
)
LAST = gauge(
    "opsagent_business_last_transaction_timestamp_seconds",
    "When the agent last saw a transaction of this outcome.",
)
READABLE = gauge(
    "opsagent_business_log_readable", "Whether the flow's log file could be read (1) or not (0)."
)

OUTCOMES = ("failure", "success")  # failure first: a line matching both is a failure
OTHER = "other"
_REASON_PREFIX = "reason:"
_DEFAULT_ROTATE_GRACE = Duration(300)


@dataclass(frozen=True)
class BusinessFlow:
    """One business flow: its log files and how success and failure lines look."""

    paths: tuple[str, ...]
    success: Regex
    failure: Regex
    # one capture group: the reason a transaction failed (e.g. "code=(\w+)")
    reason: Regex | None = None
    encoding: Encoding = "utf-8"
    ignore_case: bool = False
    from_beginning: bool = False
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE

    def check(self) -> list[tuple[str, str]]:
        out = []
        if not self.paths:
            out.append(("paths", "give at least one path or glob"))
        out += [(f"paths[{i}]", "must be an absolute path") for i, p in enumerate(self.paths) if p[:1] != "/"]
        if self.reason is not None and compile_regex(self.reason).groups != 1:
            out.append(("reason", "needs exactly one capture group: the reason text"))
        return out


@dataclass(frozen=True)
class BusinessConfig:
    """The ``collectors.business`` section: flows by name."""

    enabled: bool | None = None
    flows: dict[str, BusinessFlow] = field(default_factory=dict)
    max_reasons: int = 20
    max_line_bytes: int = 4096
    max_bytes_per_cycle: int = 64 << 20
    evidence_lines: int = 5
    rotate_grace: Duration = _DEFAULT_ROTATE_GRACE

    def check(self) -> list[tuple[str, str]]:
        return limit_problems(self, ("max_reasons", "max_line_bytes", "max_bytes_per_cycle"))


@dataclass
class _Flow:
    name: str
    spec: BusinessFlow
    matcher: Matcher
    reason: Any


@register("business", config=BusinessConfig, default=True)
class BusinessCollector:
    """Business transactions per flow and outcome, counted from application logs."""

    name = "business"

    def __init__(self, config: BusinessConfig):
        self.config = config
        self.flows = []
        for name, f in sorted(config.flows.items()):
            specs = [
                PatternSpec("failure", f.failure, f.ignore_case),
                PatternSpec("success", f.success, f.ignore_case),
            ]
            reason = None
            if f.reason is not None:
                reason = compile_regex(f"(?i:{f.reason})" if f.ignore_case else f.reason)
            # One line is one transaction: no continuation lines.
            self.flows.append(_Flow(name, f, Matcher(specs, continuation=None), reason))

    def collect(self, ctx: Context) -> Iterator[Sample]:
        for flow in self.flows:
            yield from self._flow(ctx, flow)

    def _flow(self, ctx: Context, flow: _Flow) -> Iterator[Sample]:
        cfg = self.config
        now = ctx.now()
        prefix = f"flow:{flow.name}:"
        failures: deque[tuple[str, Record]] = deque(maxlen=cfg.evidence_lines or None)
        seen: set[str] = set()
        for pattern in flow.spec.paths:
            found, problems = expand(pattern, flow.spec.exclude, ctx.paths.root)
            for problem in problems:
                yield READABLE.sample(0, flow=flow.name, file=pattern)
                ctx.add_evidence(Evidence("business", problem, {"flow": flow.name, "file": pattern}, now))
            for path, label in found:
                if label in seen:
                    continue
                seen.add(label)
                yield from self._file(ctx, flow, path, label, prefix + label, failures)
        # Totals over every file the flow has read, vanished ones included, so they never go down.
        totals: dict[str, float] = {}
        last: dict[str, float] = {}
        for key in ctx.state.keys(prefix):
            st, _ = load_state(ctx.state, key)
            for k, v in st.counts.items():
                totals[k] = totals.get(k, 0.0) + v
            for k, v in st.last_match.items():
                last[k] = max(last.get(k, 0.0), v)
        for outcome in OUTCOMES:
            yield TRANSACTIONS.sample(totals.get(outcome, 0.0), flow=flow.name, outcome=outcome)
            if outcome in last:
                yield LAST.sample(last[outcome], flow=flow.name, outcome=outcome)
        for k, v in sorted(totals.items()):
            if k.startswith(_REASON_PREFIX):
                yield FAILURES.sample(v, flow=flow.name, reason=k[len(_REASON_PREFIX) :])
        for label, r in failures:
            text = record_text(r.text, cfg.max_line_bytes)
            ctx.add_evidence(Evidence("business", text, {"flow": flow.name, "file": label}, now))

    def _file(
        self, ctx: Context, flow: _Flow, path: Path, label: str, key: str,
        failures: deque[tuple[str, Record]],
    ) -> Iterator[Sample]:
        cfg = self.config
        now = ctx.now()

        def on_records(records: list[Record], state: FileState) -> None:
            for r in records:
                outcome = OUTCOMES[r.patterns[0]]  # sorted indices: failure (0) wins
                state.counts[outcome] = state.counts.get(outcome, 0.0) + 1
                state.last_match[outcome] = now
                if outcome == "failure":
                    if flow.reason is not None:
                        reason = self._reason(flow, r.text, state)
                        k = _REASON_PREFIX + reason
                        state.counts[k] = state.counts.get(k, 0.0) + 1
                    if cfg.evidence_lines:
                        failures.append((label, r))

        out = scan_file(
            ctx, key, path, flow.matcher, on_records,
            encoding=flow.spec.encoding, from_beginning=flow.spec.from_beginning,
            max_bytes=cfg.max_bytes_per_cycle, rotate_grace=float(cfg.rotate_grace),
        )
        if out.readable and out.state.position is None:
            return
        yield READABLE.sample(1 if out.readable else 0, flow=flow.name, file=label)
        if not out.readable:
            ctx.add_evidence(Evidence("business", out.reason, {"flow": flow.name, "file": label}, now))

    def _reason(self, flow: _Flow, text: bytes, state: FileState) -> str:
        m = flow.reason.search(text)
        if m is None or m.group(1) is None:
            return "unknown"
        reason = m.group(1).decode("utf-8", errors="replace").strip()[:64] or "unknown"
        known = {k for k in state.counts if k.startswith(_REASON_PREFIX)}
        if _REASON_PREFIX + reason not in known and len(known) >= self.config.max_reasons:
            return OTHER
        return reason
