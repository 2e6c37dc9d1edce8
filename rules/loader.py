"""Rule files: Prometheus' alerting-rule format plus opsagent's optional extensions.

A plain Prometheus rule file loads unchanged. Extension keys on an alerting
rule (see docs/rules.md): ``levels``, ``impact``, ``recover``, ``inhibits``,
``depends_on``, and per-language annotations (``summary_zh``). Every problem
is reported at once with file, line, key path and, for expressions, the
offending part of the expression.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collector.schema import ConfigError, Duration, Problem, compose, line_of, plain, read_document
from rules import levels as lv
from rules.model import LEVELS

PACKS_DIR = Path(__file__).resolve().parent / "packs"

# Annotation key suffix -> language tag: ``summary_zh`` is the zh-CN text of
# ``summary``; a key without a suffix is English. Suffixes keep annotation
# names valid Prometheus label names, so exported files stay promtool-valid.
LANGUAGE_SUFFIXES: Mapping[str, str] = {"en": "en", "zh": "zh-CN"}

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")

_GROUP_KEYS = {"name", "interval", "limit", "rules"}
_RULE_KEYS = {
    "alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations",
    # opsagent extensions
    "levels", "impact", "recover", "inhibits", "depends_on",
}
EXTENSION_KEYS = frozenset({"levels", "impact", "recover", "inhibits", "depends_on"})


@dataclass(frozen=True)
class RulesOptions:
    """How rules classify and behave; built from the ``rules:`` config section.

    ``honor_group_interval`` makes a group with ``interval:`` skip
    evaluations until it is due (the daemon); promtool's test runner
    evaluates every group at every step, and so does opsagent's by default.
    """

    severity_levels: Mapping[str, str] = field(default_factory=lambda: dict(lv.DEFAULT_SEVERITY_LEVELS))
    impact_matrix: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {k: dict(v) for k, v in lv.DEFAULT_IMPACT_MATRIX.items()}
    )
    default_tier: str = lv.DEFAULT_TIER
    tier_label: str = "tier"
    levels: tuple[str, ...] = LEVELS
    language: str = "en"
    flapping: bool = True
    flap_window: int = 21
    flap_high: float = 20.0
    flap_low: float = 5.0
    disabled: frozenset[str] = frozenset()
    honor_group_interval: bool = False
    external_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def urgencies(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for row in self.impact_matrix.values():
            seen.update(dict.fromkeys(row))
        return tuple(seen)


@dataclass(frozen=True)
class Relation:
    """A parent/child link for inhibition: a firing ``parent`` silences ``children``.

    ``children`` is a tuple of alert names, or ``("*",)`` for every other
    alert; labels named in ``equal`` must have the same value on both.
    """

    parent: str
    children: tuple[str, ...]
    equal: tuple[str, ...]

    def silences(self, child: str) -> bool:
        return child != self.parent and ("*" in self.children or child in self.children)


@dataclass(frozen=True, eq=False)
class AlertingRule:
    """One alerting rule, parsed and validated."""

    name: str
    expr: str
    parsed: Any
    group: str
    file: str
    line: int
    for_: float = 0.0
    keep_firing_for: float = 0.0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # parsed templates (rules.template.Template) of labels/annotations containing "{{"
    label_templates: Mapping[str, Any] = field(default_factory=dict)
    annotation_templates: Mapping[str, Any] = field(default_factory=dict)
    levels: tuple[tuple[str, lv.Threshold], ...] = ()
    urgency: str | None = None
    recover: str | None = None
    recover_parsed: Any = None
    recover_threshold: lv.Threshold | None = None
    inhibits: tuple[Relation, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What must stay equal for alert state to survive a reload."""
        return (self.file, self.group, self.name, self.expr)

    @property
    def extensions(self) -> bool:
        """Whether the rule uses opsagent-only behaviour (not exported as is)."""
        return bool(self.levels or self.urgency or self.recover or self.inhibits)


@dataclass(frozen=True, eq=False)
class RecordingRule:
    """One recording rule: its result is written back into the history as ``record``."""

    record: str
    expr: str
    parsed: Any
    group: str
    file: str
    line: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record


Rule = AlertingRule | RecordingRule


@dataclass(frozen=True)
class RuleGroup:
    """Rules evaluated together, in order, at one interval."""

    name: str
    file: str
    rules: tuple[Rule, ...]
    interval: float | None = None
    limit: int = 0


@dataclass(frozen=True)
class RuleSet:
    """Every loaded rule group, with the inhibition relations between alerts."""

    groups: tuple[RuleGroup, ...] = ()
    files: tuple[str, ...] = ()

    @property
    def alerting_rules(self) -> list[AlertingRule]:
        return [r for g in self.groups for r in g.rules if isinstance(r, AlertingRule)]

    @property
    def relations(self) -> list[Relation]:
        return [rel for r in self.alerting_rules for rel in r.inhibits]

    def __len__(self) -> int:
        return sum(len(g.rules) for g in self.groups)


# ---------------------------------------------------------------- loading


def pack_paths(disabled: frozenset[str] | set[str] = frozenset()) -> list[Path]:
    """The default rule packs shipped in ``rules/packs`` (by file stem, minus ``disabled``)."""
    return [p for p in sorted(PACKS_DIR.glob("*.yml")) if p.stem not in disabled]


def load_files(paths: Sequence[str | Path], options: RulesOptions | None = None) -> RuleSet:
    """Load and validate rule files; raise ConfigError listing every problem of every file.

    Rules and groups named in ``options.disabled`` are left out.
    """
    options = options or RulesOptions()
    problems: list[Problem] = []
    groups: list[RuleGroup] = []
    references: list[tuple[str, Problem]] = []
    for path in paths:
        try:
            node, file = read_document(path)
        except ConfigError as e:
            problems.extend(e.problems)
            continue
        p = _FileParser(file, options)
        groups.extend(p.parse(node))
        problems.extend(p.problems)
        references.extend(p.references)
    if not problems:
        problems = _unknown_references(references, groups, paths)
    if problems:
        raise ConfigError(problems)
    kept = []
    for g in groups:
        if g.name in options.disabled:
            continue
        rules = tuple(r for r in g.rules if r.name not in options.disabled)
        kept.append(RuleGroup(g.name, g.file, rules, g.interval, g.limit))
    return RuleSet(tuple(kept), tuple(str(p) for p in paths))


def _unknown_references(
    references: Sequence[tuple[str, Problem]], groups: Sequence[RuleGroup], paths: Sequence[str | Path]
) -> list[Problem]:
    """Problems for alert names in ``inhibits``/``depends_on`` that no rule has: a typo there would
    silently stop inhibition. Names of the default packs count as known, so a site file may name
    TargetDown even when it is checked alone or a pack is disabled."""
    known = {r.name for g in groups for r in g.rules if isinstance(r, AlertingRule)}
    missing = [(name, where) for name, where in references if name not in known]
    if not missing:
        return []
    packs = [p for p in pack_paths() if str(p) not in {str(x) for x in paths}]
    if packs:
        try:
            known |= {r.name for r in load_files(packs).alerting_rules}
        except ConfigError:
            pass  # a broken pack is reported where it is loaded
    out = []
    for name, where in missing:
        if name in known:
            continue
        hint = _close(name, known)
        out.append(dataclasses.replace(where, message=f"no alerting rule is named {name!r} "
                                       f"(in these files or the default packs)"
                                       + (f"; did you mean {hint!r}?" if hint else "")))
    return out


def parse_rules(text: str, file: str = "<rules>", options: RulesOptions | None = None) -> RuleSet:
    """Parse rule-file text (pure); raise ConfigError listing every problem."""
    p = _FileParser(file, options or RulesOptions())
    groups = p.parse(compose(text, file))
    if p.problems:
        raise ConfigError(p.problems)
    return RuleSet(tuple(groups), (file,))


def snippet(text: str, pos: int, width: int = 24) -> str:
    """The part of an expression around ``pos``, with ``⟨here⟩`` marking the spot."""
    pos = max(0, min(pos, len(text)))
    start, end = max(0, pos - width), min(len(text), pos + width)
    left = ("…" if start else "") + text[start:pos]
    right = text[pos:end] + ("…" if end < len(text) else "")
    return " ".join(f"{left}⟨here⟩{right}".split())


class _FileParser:
    """Walks one rule file's YAML nodes, collecting problems."""

    def __init__(self, file: str, options: RulesOptions):
        self.file = file
        self.options = options
        self.problems: list[Problem] = []
        # alert names used by inhibits/depends_on, with where they are written; checked once
        # every file is loaded
        self.references: list[tuple[str, Problem]] = []

    def error(self, node: yaml.Node | None, path: str, message: str, line: int = 0) -> None:
        self.problems.append(Problem(self.file, line or line_of(node), path, message))

    def parse(self, node: yaml.Node | None) -> list[RuleGroup]:
        if node is None:
            return []
        top = self._mapping(node, "")
        if top is None:
            return []
        for key, (knode, _) in top.items():
            if key != "groups":
                self.error(knode, key, "unknown key (a rule file has only 'groups')")
        if "groups" not in top:
            return []
        gnode = top["groups"][1]
        if not isinstance(gnode, yaml.SequenceNode):
            if not _is_null(gnode):
                self.error(gnode, "groups", "must be a list of rule groups")
            return []
        out: list[RuleGroup] = []
        seen: dict[str, int] = {}
        for i, n in enumerate(gnode.value):
            g = self._group(n, f"groups[{i}]")
            if g is None:
                continue
            if g.name in seen:
                first = seen[g.name]
                self.error(n, f"groups[{i}].name",
                           f"group name {g.name!r} is repeated in the same file (first at line {first})")
                continue
            seen[g.name] = line_of(n)
            out.append(g)
        return out

    def _mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, "must be a mapping")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for knode, vnode in node.value:
            key = str(knode.value)
            if key in out:
                self.error(knode, _join(path, key), "duplicate key")
            out[key] = (knode, vnode)
        return out

    def _string(self, node: yaml.Node, path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or _is_null(node):
            self.error(node, path, "must be a string")
            return None
        v = plain(node)
        return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

    def _duration(self, node: yaml.Node, path: str) -> float | None:
        text = self._string(node, path)
        if text is None:
            return None
        try:
            return float(Duration.parse(text))
        except ValueError as e:
            self.error(node, path, str(e))
            return None

    def _string_map(self, node: yaml.Node, path: str) -> dict[str, str]:
        if _is_null(node):
            return {}
        m = self._mapping(node, path)
        out: dict[str, str] = {}
        for key, (knode, vnode) in (m or {}).items():
            if not _LABEL_NAME.match(key):
                self.error(knode, _join(path, key), f"invalid name {key!r} (use letters, digits and _)")
                continue
            v = self._string(vnode, _join(path, key))
            if v is not None:
                out[key] = v
        return out

    def _group(self, node: yaml.Node, path: str) -> RuleGroup | None:
        m = self._mapping(node, path)
        if m is None:
            return None
        for key, (knode, _) in m.items():
            if key not in _GROUP_KEYS:
                self.error(knode, _join(path, key), "unknown key")
        if "name" not in m:
            self.error(node, _join(path, "name"), "required key is missing")
            return None
        name = self._string(m["name"][1], _join(path, "name"))
        if not name:
            if name == "":
                self.error(m["name"][1], _join(path, "name"), "must not be empty")
            return None
        interval = self._duration(m["interval"][1], _join(path, "interval")) if "interval" in m else None
        limit = 0
        if "limit" in m:
            v = plain(m["limit"][1])
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                self.error(m["limit"][1], _join(path, "limit"), "must be a non-negative integer")
            else:
                limit = v
        rules: list[Rule] = []
        if "rules" in m:
            rnode = m["rules"][1]
            if isinstance(rnode, yaml.SequenceNode):
                for i, n in enumerate(rnode.value):
                    r = self._rule(n, f"{path}.rules[{i}]", name)
                    if r is not None:
                        rules.append(r)
            elif not _is_null(rnode):
                self.error(rnode, _join(path, "rules"), "must be a list of rules")
        return RuleGroup(name, self.file, tuple(rules), interval, limit)

    def _rule(self, node: yaml.Node, path: str, group: str) -> Rule | None:
        m = self._mapping(node, path)
        if m is None:
            return None
        before = len(self.problems)
        alert = self._string(m["alert"][1], _join(path, "alert")) if "alert" in m else None
        record = self._string(m["record"][1], _join(path, "record")) if "record" in m else None
        for key, (knode, _) in m.items():
            if key not in _RULE_KEYS:
                hint = _close(key, _RULE_KEYS)
                self.error(knode, _join(f"{path}({alert or record or ''})", key),
                           "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""))
        if (alert is None) == (record is None):
            if "alert" not in m and "record" not in m:
                self.error(node, path, "a rule needs 'alert' (alerting rule) or 'record' (recording rule)")
            elif alert is not None and record is not None:
                self.error(node, path, "a rule has 'alert' or 'record', not both")
            return None
        name = alert or record or ""
        rpath = f"{path}({name})"
        if alert is not None and not _METRIC_NAME.match(alert):
            self.error(m["alert"][1], _join(rpath, "alert"), f"invalid alert name {alert!r}")
        if record is not None and not _METRIC_NAME.match(record):
            self.error(m["record"][1], _join(rpath, "record"), f"invalid metric name {record!r}")
        if "expr" not in m:
            self.error(node, _join(rpath, "expr"), "required key is missing")
            return None
        expr_node = m["expr"][1]
        expr = self._string(expr_node, _join(rpath, "expr"))
        parsed = self._promql(expr, expr_node, _join(rpath, "expr")) if expr is not None else None
        labels = self._string_map(m["labels"][1], _join(rpath, "labels")) if "labels" in m else {}
        if record is not None:
            for key in _RULE_KEYS - {"record", "expr", "labels"}:
                if key in m:
                    self.error(m[key][0], _join(rpath, key), "not allowed in a recording rule")
            if len(self.problems) > before or expr is None:
                return None
            return RecordingRule(record, expr, parsed, group, self.file, line_of(node), labels)
        assert alert is not None
        for_ = self._duration(m["for"][1], _join(rpath, "for")) if "for" in m else 0.0
        keep = (
            self._duration(m["keep_firing_for"][1], _join(rpath, "keep_firing_for"))
            if "keep_firing_for" in m else 0.0
        )
        annotations = (
            self._string_map(m["annotations"][1], _join(rpath, "annotations")) if "annotations" in m else {}
        )
        label_tpl = self._templates(labels, m.get("labels"), _join(rpath, "labels"))
        ann_tpl = self._templates(annotations, m.get("annotations"), _join(rpath, "annotations"))
        levels = self._levels(m["levels"][1], _join(rpath, "levels")) if "levels" in m else ()
        urgency = self._impact(m["impact"][1], _join(rpath, "impact")) if "impact" in m else None
        if levels and urgency:
            self.error(m["impact"][0], _join(rpath, "impact"), "use either 'levels' or 'impact', not both")
        if (levels or urgency) and "level" in labels:
            self.error(m["labels"][1], _join(rpath, "labels.level"),
                       "the level comes from 'levels'/'impact' here; remove the 'level' label")
        if "level" in labels and labels["level"] not in self.options.levels:
            self.error(m["labels"][1], _join(rpath, "labels.level"),
                       f"unknown level {labels['level']!r} (use one of {', '.join(self.options.levels)})")
        recover, recover_parsed, recover_th = None, None, None
        if "recover" in m:
            rnode = m["recover"][1]
            recover = self._string(rnode, _join(rpath, "recover"))
            if recover is not None:
                if recover.strip()[:1] in ("<", ">", "=", "!"):
                    if not levels:
                        self.error(rnode, _join(rpath, "recover"),
                                   "a bare threshold needs 'levels' (the expression without comparison); "
                                   "otherwise write a full PromQL expression")
                    try:
                        recover_th = lv.parse_threshold(recover)
                    except ValueError as e:
                        self.error(rnode, _join(rpath, "recover"), str(e))
                else:
                    recover_parsed = self._promql(recover, rnode, _join(rpath, "recover"))
        inhibits: list[Relation] = []
        if "inhibits" in m:
            inhibits += self._relations(m["inhibits"][1], _join(rpath, "inhibits"), alert, True)
        if "depends_on" in m:
            inhibits += self._relations(m["depends_on"][1], _join(rpath, "depends_on"), alert, False)
        if len(self.problems) > before or expr is None or for_ is None or keep is None:
            return None
        return AlertingRule(
            name=alert, expr=expr, parsed=parsed, group=group, file=self.file, line=line_of(node),
            for_=for_, keep_firing_for=keep, labels=labels, annotations=annotations,
            label_templates=label_tpl, annotation_templates=ann_tpl, levels=levels, urgency=urgency,
            recover=recover, recover_parsed=recover_parsed, recover_threshold=recover_th,
            inhibits=tuple(inhibits),
        )

    def _promql(self, text: str, node: yaml.Node, path: str) -> Any:
        from rules import promql

        try:
            parsed = promql.parse(text)
        except promql.PromQLError as e:
            pos = int(getattr(e, "pos", 0) or 0)
            message = str(e.args[0]) if e.args else str(e)
            self.error(node, path, f"{message} near \"{snippet(text, pos)}\"", line=_line_at(node, text, pos))
            return None
        if parsed.type not in ("vector", "scalar"):
            # Prometheus loads such a rule and then fails every evaluation ("rule result is not
            # a vector or scalar"); refusing it here tells the author at once.
            from rules.promql.parser import type_name

            matrix = parsed.type == "matrix"
            hint = " (wrap the range selector in a function, e.g. rate(x[5m]))" if matrix else ""
            self.error(node, path, f"the expression returns a {type_name(parsed.type)}; a rule needs an "
                                   f"instant vector or a scalar{hint}")
            return None
        return parsed

    def _templates(
        self, values: Mapping[str, str], entry: tuple[yaml.Node, yaml.Node] | None, path: str
    ) -> dict[str, Any]:
        if entry is None or not any("{{" in v for v in values.values()):
            return {}
        from rules.template import Template, TemplateError

        nodes = {str(k.value): v for k, v in entry[1].value} if isinstance(entry[1], yaml.MappingNode) else {}
        out: dict[str, Any] = {}
        for key, text in values.items():
            if "{{" not in text:
                continue
            try:
                out[key] = Template.parse(text)
            except TemplateError as e:
                self.error(nodes.get(key, entry[1]), _join(path, key), f"template error: {e}")
        return out

    def _levels(self, node: yaml.Node, path: str) -> tuple[tuple[str, lv.Threshold], ...]:
        m = self._mapping(node, path)
        out: list[tuple[str, lv.Threshold]] = []
        for key, (knode, vnode) in (m or {}).items():
            if key not in self.options.levels:
                names = ", ".join(self.options.levels)
                self.error(knode, _join(path, key), f"unknown level {key!r} (use one of {names})")
                continue
            text = self._string(vnode, _join(path, key))
            if text is None:
                continue
            try:
                out.append((key, lv.parse_threshold(text)))
            except ValueError as e:
                self.error(vnode, _join(path, key), str(e))
        if m is not None and not m:
            self.error(node, path, "must name at least one level, e.g. P2: \"> 0.95\"")
        out.sort(key=lambda t: lv.rank(t[0], self.options.levels))
        return tuple(out)

    def _impact(self, node: yaml.Node, path: str) -> str | None:
        m = self._mapping(node, path)
        if m is None:
            return None
        for key, (knode, _) in m.items():
            if key != "urgency":
                self.error(knode, _join(path, key), "unknown key (impact has only 'urgency')")
        if "urgency" not in m:
            self.error(node, _join(path, "urgency"), "required key is missing")
            return None
        u = self._string(m["urgency"][1], _join(path, "urgency"))
        if u is not None and u not in self.options.urgencies:
            self.error(m["urgency"][1], _join(path, "urgency"),
                       f"unknown urgency {u!r} (use one of {', '.join(self.options.urgencies)})")
            return None
        return u

    def _relations(self, node: yaml.Node, path: str, alert: str, parent_side: bool) -> list[Relation]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, path, "must be a list")
            return []
        names_key = "alerts" if parent_side else "alert"
        out: list[Relation] = []
        for i, item in enumerate(node.value):
            ipath = f"{path}[{i}]"
            m = self._mapping(item, ipath)
            if m is None:
                continue
            for key, (knode, _) in m.items():
                if key not in (names_key, "equal"):
                    self.error(knode, _join(ipath, key), f"unknown key (use {names_key!r} and 'equal')")
            equal = self._name_list(m["equal"][1], _join(ipath, "equal")) if "equal" in m else ()
            if names_key not in m:
                self.error(item, _join(ipath, names_key), "required key is missing")
                continue
            if parent_side:
                names_node = m["alerts"][1]
                children = self._name_list(names_node, _join(ipath, "alerts"), allow_star=True)
                out.append(Relation(alert, children, equal))
                where = Problem(self.file, line_of(names_node), _join(ipath, "alerts"), "")
                self.references.extend((c, where) for c in children if c != "*")
            else:
                parent = self._string(m["alert"][1], _join(ipath, "alert"))
                if parent:
                    out.append(Relation(parent, (alert,), equal))
                    where = Problem(self.file, line_of(m["alert"][1]), _join(ipath, "alert"), "")
                    self.references.append((parent, where))
        return out

    def _name_list(self, node: yaml.Node, path: str, allow_star: bool = False) -> tuple[str, ...]:
        if isinstance(node, yaml.ScalarNode) and not _is_null(node):
            items = [node]
        elif isinstance(node, yaml.SequenceNode):
            items = list(node.value)
        else:
            self.error(node, path, "must be a list of names")
            return ()
        out = []
        for n in items:
            v = self._string(n, path)
            if v is None:
                continue
            if not (_METRIC_NAME.match(v) or (allow_star and v == "*")):
                self.error(n, path, f"invalid name {v!r}")
                continue
            out.append(v)
        return tuple(out)


def _close(key: str, options: set[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, sorted(options), n=1, cutoff=0.75)
    return m[0] if m else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _line_at(node: yaml.Node, text: str, pos: int) -> int:
    """Line of character ``pos`` of a scalar's text: block scalars span several lines."""
    base = line_of(node)
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return base + 1 + text[:pos].count("\n")
    return base


def split_annotations(annotations: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Group annotations by language: ``{en: {summary: ..}, zh-CN: {summary: ..}}``.

    English fills any key a language lacks, so every language has every key.
    """
    by_lang: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGE_SUFFIXES.values()}
    for key, text in annotations.items():
        base, _, suffix = key.rpartition("_")
        if base and suffix in LANGUAGE_SUFFIXES:
            by_lang[LANGUAGE_SUFFIXES[suffix]][base] = text
        else:
            by_lang["en"].setdefault(key, text)
    for lang, ann in by_lang.items():
        if lang != "en":
            for key, text in by_lang["en"].items():
                ann.setdefault(key, text)
    return by_lang
