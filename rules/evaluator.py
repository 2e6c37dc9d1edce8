"""The alert state machine over a rule set: pending, firing, resolved; levels, flapping, inhibition.

Prometheus semantics (rules/alerting.go): a series returned by the rule's
expression makes an alert pending; it fires once it has been active for
``for`` (at once when ``for`` is 0); when the series disappears a pending
alert is dropped and a firing one resolves, unless ``keep_firing_for``
still holds. opsagent adds, in this order of precedence when the series is
gone: ``recover`` (stay firing until the recovery condition holds) and
flapping (a flapping alert stays firing, marked, rather than resolving and
firing again). A resolved alert is returned by exactly one evaluation and
then forgotten (Prometheus keeps it 15 minutes to re-send to Alertmanager;
the ticketing layer records it on the first report instead).

Across a restart the caller saves ``saved_alerts()`` and hands them to
``restore()`` of the new evaluator, which applies them at each rule's first
evaluation as Prometheus' ``RestoreForState`` does (see :func:`restored_active_at`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from collector.model import Sample
from rules import levels as lv
from rules.loader import AlertingRule, RecordingRule, RuleSet, RulesOptions, split_annotations
from rules.model import Alert, AlertState, identity

LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Active:
    """One alert instance kept between evaluations."""

    labels: dict[str, str]
    series: LabelKey  # the expression's series labels without __name__ (for ``recover``)
    value: float
    level: str | None
    state: AlertState
    active_at: float
    fired_at: float | None = None
    keep_firing_since: float | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    annotations_i18n: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class _RuleState:
    active: dict[LabelKey, _Active] = field(default_factory=dict)
    # per alert identity: did the condition hold, for the last ``flap_window`` evaluations
    results: dict[LabelKey, deque[bool]] = field(default_factory=dict)
    flapping: set[LabelKey] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class SavedAlert:
    """An active alert as kept across a restart (the store's ``alert_state`` row).

    ``rule`` is the rule's key (file, group, name, expression): a rule changed
    meanwhile starts over, as on a reload. ``labels`` are the identifying
    labels (without ``level``); ``last_seen`` is when the alert was last known
    to be active (Prometheus: the last ALERTS_FOR_STATE sample).
    """

    rule: tuple[str, str, str, str]
    labels: Mapping[str, str]
    state: AlertState
    active_at: float
    fired_at: float | None
    level: str | None
    last_seen: float


@dataclass(frozen=True, slots=True)
class _Restored:
    active_at: float
    fired_at: float | None


def restored_active_at(
    saved: SavedAlert, for_: float, now: float, outage_tolerance: float, grace: float
) -> float | None:
    """The ``active_at`` an alert active again after a restart at ``now`` resumes from; None: start over.

    Prometheus' RestoreForState (rules/group.go), with ``last_seen`` as the
    time it went down: nothing is restored after an outage longer than
    ``outage_tolerance``; an alert that was firing keeps its ``active_at``
    (it fires again at once); a pending one whose ``for`` is shorter than
    ``grace`` starts over; one that would fire within ``grace`` of the restart
    fires at ``now + grace``; any other resumes its pending time (``active_at``
    moved later by the outage), so a restart never fires an alert earlier
    than its ``for`` allows.
    """
    if now - saved.last_seen > outage_tolerance or saved.active_at > now:
        return None
    remaining = for_ - (saved.last_seen - saved.active_at)
    if remaining <= 0:
        return saved.active_at
    if for_ < grace:
        return None
    if remaining < grace:
        return now + grace - for_
    return saved.active_at + (now - saved.last_seen)


@dataclass(frozen=True, slots=True)
class Series:
    """A series of an instant-vector result, whatever the engine's own type."""

    labels: Mapping[str, str]
    value: float


def as_series(result: Any) -> list[Series]:
    """Turn an engine result (vector, scalar or string) into series; a scalar is one unlabelled series."""
    if result is None:
        return []
    if isinstance(result, int | float):
        return [Series({}, float(result))]
    if hasattr(result, "value") and not hasattr(result, "labels") and not isinstance(result, list | tuple):
        v = result.value
        return [Series({}, float(v))] if isinstance(v, int | float) else []
    items = getattr(result, "series", result)
    return [Series(s.labels, float(s.value)) for s in items]


def _key(labels: Mapping[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _without_name(labels: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != "__name__"}


class RuleEvaluator:
    """Evaluates a RuleSet over a history, keeping alert state across calls.

    ``evaluate(history, now)`` returns the pending and firing alerts and,
    once, those that resolved. ``replace(ruleset)`` swaps the rules on a
    reload and keeps the state of every rule whose file, group, name and
    expression are unchanged.
    """

    def __init__(self, ruleset: RuleSet, options: RulesOptions | None = None):
        self.options = options or RulesOptions()
        self.ruleset = ruleset
        self._state: dict[tuple[str, str, str, str], _RuleState] = {}
        self._group_last: dict[tuple[str, str], float] = {}
        self.failures_total = 0
        self.last_duration = 0.0
        self.last_errors: list[str] = []
        # bumped whenever an alert starts, fires, changes level or ends: what saved_alerts()
        # returns changed, so the caller writes the store only then
        self.changes = 0
        # per rule: what restore() found for its alerts, applied at the rule's next evaluation
        self._restore: dict[tuple[str, str, str, str], dict[LabelKey, _Restored]] = {}

    def replace(self, ruleset: RuleSet) -> None:
        """Use new rules; alert state survives for rules that did not change."""
        keys = {r.key for r in ruleset.alerting_rules}
        self._state = {k: v for k, v in self._state.items() if k in keys}
        self.ruleset = ruleset

    def adopt(self, other: RuleEvaluator) -> None:
        """Take over another evaluator's alert state for the rules both have (a reload)."""
        keys = {r.key for r in self.ruleset.alerting_rules}
        self._state.update({k: v for k, v in other._state.items() if k in keys})
        self._group_last.update(other._group_last)
        # a reload before some rule's first evaluation after start-up: its restore still applies
        self._restore.update({k: v for k, v in other._restore.items() if k in keys})

    def restore(
        self, saved: Iterable[SavedAlert], now: float, outage_tolerance: float, grace: float
    ) -> int:
        """Take the alert state a previous run saved (start-up only; a reload uses ``adopt``).

        Each rule's next evaluation applies it to the alerts that are active
        again then; the others are forgotten, as in Prometheus. Returns how
        many alerts may resume (of rules still loaded, within the tolerance).
        """
        rules = {r.key: r for r in self.ruleset.alerting_rules}
        self._restore = {}
        count = 0
        for s in saved:
            rule = rules.get(s.rule)
            if rule is None:
                continue
            active_at = restored_active_at(s, rule.for_, now, outage_tolerance, grace)
            if active_at is None:
                continue
            fired_at = s.fired_at if s.state == "firing" and active_at == s.active_at else None
            self._restore.setdefault(rule.key, {})[_key(s.labels)] = _Restored(active_at, fired_at)
            count += 1
        return count

    def saved_alerts(self, now: float) -> list[SavedAlert]:
        """The pending and firing alerts as of ``now``, for the store (see ``restore``)."""
        out: list[SavedAlert] = []
        for key, st in self._state.items():
            for ident, a in st.active.items():
                out.append(SavedAlert(key, dict(ident), a.state, a.active_at, a.fired_at, a.level, now))
        return out

    def evaluate(self, history: Any, now: float) -> list[Alert]:
        """Evaluate every due group at ``now``; return pending, firing and just-resolved alerts."""
        from rules.promql import Engine

        t0 = time.perf_counter()  # duration metric only; ``now`` drives all logic
        engine = Engine(history, LOOKBACK)
        cache: dict[str, list[Series]] = {}
        errors: list[str] = []
        out: list[Alert] = []
        opts = self.options
        for group in self.ruleset.groups:
            gkey = (group.file, group.name)
            if opts.honor_group_interval and group.interval:
                last = self._group_last.get(gkey)
                if last is not None and now - last < group.interval - 1e-6:
                    out.extend(self._current(group.rules))
                    continue
            self._group_last[gkey] = now
            for rule in group.rules:
                try:
                    if isinstance(rule, RecordingRule):
                        self._record(rule, engine, history, now)
                    else:
                        out.extend(self._alert(rule, engine, cache, now))
                except Exception as e:  # an engine error in one rule never stops the others
                    self.failures_total += 1
                    errors.append(f"{rule.name}: {e}")
                    if isinstance(rule, AlertingRule):
                        out.extend(self._current([rule]))
        self.last_errors = errors
        out = self._inhibit(out)
        self.last_duration = time.perf_counter() - t0
        return out

    # ------------------------------------------------------------ one rule

    def _query(
        self, engine: Any, cache: dict[str, list[Series]], text: str, parsed: Any, now: float
    ) -> list[Series]:
        # Levelled rules and their exports share expressions: evaluate each text once per cycle.
        if text not in cache:
            cache[text] = as_series(engine.instant(parsed, now))
        return cache[text]

    def _record(self, rule: RecordingRule, engine: Any, history: Any, now: float) -> None:
        samples = []
        for s in as_series(engine.instant(rule.parsed, now)):
            labels = {**_without_name(s.labels), **rule.labels}
            samples.append(Sample(rule.record, labels, s.value, now))
        # one source per rule: a source's series missing next time get a staleness marker
        history.append(samples, now, source=f"rule:{rule.file}:{rule.group}:{rule.record}")

    def _level(self, rule: AlertingRule, series: Series) -> str | None:
        opts = self.options
        if rule.levels:
            return lv.level_for_value(series.value, rule.levels, opts.levels)
        if rule.urgency:
            tier = series.labels.get(opts.tier_label) or rule.labels.get(opts.tier_label)
            return lv.level_for_impact(tier, rule.urgency, opts.impact_matrix, opts.default_tier)
        if "level" in rule.labels:
            return rule.labels["level"]
        return lv.level_for_severity(rule.labels.get("severity"), opts.severity_levels)

    def _alert(
        self, rule: AlertingRule, engine: Any, cache: dict[str, list[Series]], now: float
    ) -> list[Alert]:
        opts = self.options
        st = self._state.setdefault(rule.key, _RuleState())
        base = self._query(engine, cache, rule.expr, rule.parsed, now)
        classifies = bool(rule.levels or rule.urgency)
        holding: dict[LabelKey, tuple[Series, dict[str, str], str | None]] = {}
        base_by_series: dict[LabelKey, Series] = {}
        for s in base:
            series_key = _key(_without_name(s.labels))
            if rule.levels:
                base_by_series[series_key] = s
            level = self._level(rule, s)
            if rule.levels and level is None:
                continue  # no threshold holds
            labels = self._labels(rule, s)
            if classifies and level:
                labels["level"] = level
            ident = _key(identity(labels))
            if ident in holding:
                raise ValueError("vector contains metrics with the same labelset after applying alert labels")
            holding[ident] = (s, labels, level)

        restored = self._restore.pop(rule.key, None) if self._restore else None
        for ident, (s, labels, level) in holding.items():
            a = st.active.get(ident)
            if a is None:
                r = restored.get(ident) if restored else None
                a = _Active(labels, _key(_without_name(s.labels)), s.value, level, "pending",
                            r.active_at if r else now)
                if r is not None and r.fired_at is not None and now - r.active_at >= rule.for_ - 1e-9:
                    a.state, a.fired_at = "firing", r.fired_at  # fired before the restart: the same firing
                st.active[ident] = a
                self.changes += 1
            elif a.level != level:
                self.changes += 1
            a.labels, a.value, a.level = labels, s.value, level
            a.series = _key(_without_name(s.labels))
            a.keep_firing_since = None
            self._annotate(rule, a, s)

        # firing alerts whose series is gone but that keep_firing_for or recover hold
        kept: set[LabelKey] = set()
        recovered: set[LabelKey] | None = None
        for ident, a in st.active.items():
            if ident in holding or a.state != "firing":
                continue
            if rule.keep_firing_for > 0:
                if a.keep_firing_since is None:
                    a.keep_firing_since = now
                if now - a.keep_firing_since < rule.keep_firing_for:
                    kept.add(ident)
                    continue
            if rule.recover_parsed is not None:
                if recovered is None:
                    rec = self._query(engine, cache, rule.recover or "", rule.recover_parsed, now)
                    recovered = {_key(_without_name(r.labels)) for r in rec}
                if a.series not in recovered:
                    kept.add(ident)
                    continue
            if rule.recover_threshold is not None:
                cur = base_by_series.get(a.series)
                if cur is not None and not rule.recover_threshold.holds(cur.value):
                    a.value = cur.value
                    self._annotate(rule, a, cur)  # texts show the current value, not the last alarming one
                    kept.add(ident)

        if opts.flapping:
            self._flap(st, set(holding) | kept)

        out: list[Alert] = []
        for ident, a in list(st.active.items()):
            if ident in holding or ident in kept:
                if a.state == "pending" and now - a.active_at >= rule.for_ - 1e-9:
                    a.state, a.fired_at = "firing", now
                    self.changes += 1
                out.append(self._make(rule, ident, a, st))
            elif a.state == "pending":
                del st.active[ident]
                self.changes += 1
            elif ident in st.flapping:
                out.append(self._make(rule, ident, a, st))  # flapping: stays firing, not re-fired
            else:
                del st.active[ident]
                self.changes += 1
                out.append(_replace_state(self._make(rule, ident, a, st), "resolved", now))
        return out

    def _flap(self, st: _RuleState, active: set[LabelKey]) -> None:
        """Record this evaluation's activity of each alert and update its flapping mark (Nagios)."""
        opts = self.options
        for ident in set(st.results) | active | set(st.active):
            hist = st.results.get(ident)
            if hist is None:
                # a new alert starts from a quiet window, so one fire-and-resolve is not flapping
                hist = st.results[ident] = deque([False] * opts.flap_window, maxlen=opts.flap_window)
            hist.append(ident in active)
            pct = lv.flap_percent(hist)
            if ident in st.flapping:
                if pct < opts.flap_low:
                    st.flapping.discard(ident)
            elif pct >= opts.flap_high:
                st.flapping.add(ident)
            if not any(hist) and ident not in st.active:
                del st.results[ident]
                st.flapping.discard(ident)

    def _labels(self, rule: AlertingRule, s: Series) -> dict[str, str]:
        labels = _without_name(s.labels)
        for k, v in rule.labels.items():
            tpl = rule.label_templates.get(k)
            labels[k] = tpl.render(s.labels, s.value, self.options.external_labels) if tpl else v
        labels["alertname"] = rule.name
        return {k: v for k, v in labels.items() if v != ""}

    def _annotate(self, rule: AlertingRule, a: _Active, s: Series) -> None:
        rendered: dict[str, str] = {}
        for k, v in rule.annotations.items():
            tpl = rule.annotation_templates.get(k)
            if tpl is None:
                rendered[k] = v
                continue
            try:
                rendered[k] = tpl.render(s.labels, s.value, self.options.external_labels)
            except Exception as e:  # as Prometheus: a failing template shows its error, the alert stays
                rendered[k] = f"<error expanding template: {e}>"
        a.annotations = rendered
        a.annotations_i18n = split_annotations(rendered)

    def _make(self, rule: AlertingRule, ident: LabelKey, a: _Active, st: _RuleState) -> Alert:
        return Alert(
            name=rule.name, labels=dict(a.labels), level=a.level, value=a.value, state=a.state,
            annotations=dict(a.annotations), annotations_i18n=a.annotations_i18n,
            active_at=a.active_at, fired_at=a.fired_at, flapping=ident in st.flapping,
        )

    def _current(self, rules: Iterable[Any]) -> list[Alert]:
        """Alerts of rules not evaluated this time (not due, or failed), as they stand."""
        out: list[Alert] = []
        for rule in rules:
            if not isinstance(rule, AlertingRule):
                continue
            st = self._state.get(rule.key)
            if st is not None:
                out.extend(self._make(rule, ident, a, st) for ident, a in st.active.items())
        return out

    # ------------------------------------------------------------ inhibition

    def _inhibit(self, alerts: list[Alert]) -> list[Alert]:
        relations = self.ruleset.relations
        if not relations:
            return alerts
        firing: dict[str, list[Alert]] = {}
        for a in alerts:
            if a.state == "firing":
                firing.setdefault(a.name, []).append(a)
        out = []
        for a in alerts:
            silenced = a.state in ("pending", "firing") and any(
                rel.silences(a.name) and any(_equal(p, a, rel.equal) for p in firing.get(rel.parent, ()))
                for rel in relations
            )
            out.append(_replace_flag(a, inhibited=True) if silenced else a)
        return out


def _equal(parent: Alert, child: Alert, names: tuple[str, ...]) -> bool:
    return all(parent.labels.get(n, "") == child.labels.get(n, "") for n in names)


def _replace_state(a: Alert, state: AlertState, now: float) -> Alert:
    from dataclasses import replace

    return replace(a, state=state, resolved_at=now)


def _replace_flag(a: Alert, inhibited: bool) -> Alert:
    from dataclasses import replace

    return replace(a, inhibited=inhibited)


def alert_samples(alerts: Iterable[Alert], ts: float) -> list[Sample]:
    """``ALERTS`` and ``ALERTS_FOR_STATE`` series, as Prometheus writes them for active alerts."""
    out: list[Sample] = []
    for a in alerts:
        if a.state not in ("pending", "firing"):
            continue
        out.append(Sample("ALERTS", {**a.labels, "alertstate": a.state}, 1.0, ts))
        out.append(Sample("ALERTS_FOR_STATE", dict(a.labels), float(a.active_at), ts))
    return out


def actionable(alerts: Iterable[Alert]) -> list[Alert]:
    """The alerts ticketing acts on: firing or resolved, not inhibited."""
    return [a for a in alerts if a.state in ("firing", "resolved") and not a.inhibited]


# The engine's instant-selector lookback (rules.promql.Engine's default, as Prometheus').
LOOKBACK = 300.0


def history_needs(ruleset: RuleSet) -> dict[str, float] | None:
    """Seconds of history the rules read behind the evaluation time, per metric name.

    For ``History.set_keep``: a metric no rule reads needs only its newest point. None when
    some selector names no metric (it may read any series), so everything must be kept.
    """
    from rules.promql.ast import lookbehind

    needs: dict[str | None, float] = {}
    for group in ruleset.groups:
        for rule in group.rules:
            exprs = [rule.parsed]
            if isinstance(rule, AlertingRule):
                exprs.append(rule.recover_parsed)
            for e in exprs:
                if e is None:
                    continue
                for name, seconds in lookbehind(e, LOOKBACK).items():
                    needs[name] = max(seconds, needs.get(name, 0.0))
    if None in needs:
        return None
    return {name: seconds for name, seconds in needs.items() if name is not None}
