"""Message templates in zh-CN and en.

``string.Template`` with ``safe_substitute``: a ``$name`` not known is left
as is, and nothing in a template or a value is ever evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from string import Template
from typing import Any

LEVEL_NAMES = {
    "zh-CN": {"P1": "紧急", "P2": "严重", "P3": "一般", "P4": "其他"},
    "en": {"P1": "critical", "P2": "major", "P3": "minor", "P4": "info"},
}
CLOCK_NAMES = {
    "zh-CN": {"respond": "响应", "restore": "恢复", "resolve": "解决"},
    "en": {"respond": "response", "restore": "restore", "resolve": "resolution"},
}

_BODY_EN = (
    "Level: $level ($level_name)\nInstance: $instance\nRule: $rule\n$description\nSolution: $solution\n"
)
_BODY_ZH = "级别：$level（$level_name）\n实例：$instance\n规则：$rule\n$description\n处理建议：$solution\n"

TEMPLATES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "en": {
        "opened": (
            "[$level] Ticket #$id opened: $summary",
            _BODY_EN + "Respond by: $respond_due\nRestore by: $restore_due\nResolve by: $resolve_due",
        ),
        "reopened": ("[$level] Ticket #$id reopened: $summary", _BODY_EN + "Occurrences: $occurrences"),
        "relevel": (
            "[$level] Ticket #$id re-levelled $old_level -> $level: $summary",
            _BODY_EN + "Respond by: $respond_due\nResolve by: $resolve_due",
        ),
        "resolved": ("[$level] Ticket #$id resolved: $summary", "Recovered at $at.\n$note"),
        "recovered": (
            "[$level] Ticket #$id recovered, awaiting confirmation: $summary",
            "Recovered at $at. Please confirm and close.",
        ),
        "breach": (
            "[$level] Ticket #$id SLA breach ($clock_name): $summary",
            "The $clock_name deadline $due passed.\n" + _BODY_EN,
        ),
        "escalation": (
            "[$level] Escalation step $step, ticket #$id: $summary",
            "Escalated to: $who\nOpen since: $opened_at\nStatus: $status\n" + _BODY_EN,
        ),
        "vendor_case": (
            "[$level] Please open a vendor case, ticket #$id: $summary",
            "Escalated to: $who\nOpen since: $opened_at\n" + _BODY_EN,
        ),
        "digest": ("[opsagent] $count notifications", "$lines"),
    },
    "zh-CN": {
        "opened": (
            "【$level】工单 #$id 已创建：$summary",
            _BODY_ZH + "响应期限：$respond_due\n恢复期限：$restore_due\n解决期限：$resolve_due",
        ),
        "reopened": ("【$level】工单 #$id 重新打开：$summary", _BODY_ZH + "发生次数：$occurrences"),
        "relevel": (
            "【$level】工单 #$id 级别变更 $old_level -> $level：$summary",
            _BODY_ZH + "响应期限：$respond_due\n解决期限：$resolve_due",
        ),
        "resolved": ("【$level】工单 #$id 已解决：$summary", "恢复时间：$at\n$note"),
        "recovered": ("【$level】工单 #$id 已恢复，待确认：$summary", "恢复时间：$at，请确认后关闭。"),
        "breach": (
            "【$level】工单 #$id 超出$clock_name时限：$summary",
            "$clock_name期限 $due 已过。\n" + _BODY_ZH,
        ),
        "escalation": (
            "【$level】升级第 $step 级，工单 #$id：$summary",
            "升级至：$who\n开始时间：$opened_at\n状态：$status\n" + _BODY_ZH,
        ),
        "vendor_case": (
            "【$level】请向厂商报修，工单 #$id：$summary",
            "升级至：$who\n开始时间：$opened_at\n" + _BODY_ZH,
        ),
        "digest": ("【opsagent】$count 条通知汇总", "$lines"),
    },
}


def render(event: str, language: str, fields: Mapping[str, Any]) -> tuple[str, str]:
    """Title and text of ``event`` in ``language`` (en if unknown)."""
    lang = language if language in TEMPLATES else "en"
    title, body = TEMPLATES[lang][event]
    values = {k: "" if v is None else str(v) for k, v in fields.items()}
    level = values.get("level", "")
    values.setdefault("level_name", LEVEL_NAMES[lang].get(level, level))
    if "clock" in values:
        values.setdefault("clock_name", CLOCK_NAMES[lang].get(values["clock"], values["clock"]))
    text = Template(_filled_lines(body, values)).safe_substitute(values).strip()
    return Template(title).safe_substitute(values), text


def _filled_lines(template: str, values: Mapping[str, str]) -> str:
    """The template without the lines whose every field is empty: a ticket without a
    solution gets no dangling "Solution:" line, one without a description no blank line."""
    kept = []
    for line in template.split("\n"):
        names = [m.group("named") or m.group("braced") for m in Template.pattern.finditer(line)]
        names = [n for n in names if n]
        if names and all(values.get(n, None) == "" for n in names):
            continue
        kept.append(line)
    return "\n".join(kept)


def digest(language: str, titles: Sequence[str]) -> tuple[str, str]:
    """One message standing for several: every title on its own line, none left out."""
    return render("digest", language, {"count": len(titles), "lines": "\n".join(f"- {t}" for t in titles)})
