"""Structured logs to stderr: logfmt (default) or JSON lines, level from ``agent.log_level``.

The fields a caller passes with ``log.info("msg", extra={...})`` become
key/value pairs (``collector=cpu error="..."``). Values are formatted with
``str()``, so a ``collector.schema.Secret`` shows as ``****``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

# attributes every LogRecord has; anything else came from ``extra``
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ordered fields of one log line: time, level, logger, message, extras, exception."""
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
        + f".{int(record.msecs):03d}"
        + time.strftime("%z", time.localtime(record.created)),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for k, v in record.__dict__.items():
        if k not in _STANDARD and not k.startswith("_"):
            out[k] = v
    if record.exc_info and record.exc_info[0] is not None:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


def _logfmt_value(v: Any) -> str:
    s = str(v)  # str(), not the object: a Secret formats as ****
    if s == "" or any(c in s for c in ' ="\\\n\t'):
        s = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        return f'"{s}"'
    return s


class LogfmtFormatter(logging.Formatter):
    """``ts=... level=info logger=opsagent msg="..." key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in record_fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        return json.dumps(
            {k: v if isinstance(v, bool | int | float) or v is None else str(v) for k, v in fields.items()},
            ensure_ascii=False,
        )


def setup_logging(level: str = "info", fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    """Configure the ``opsagent`` logger tree (idempotent: safe to call again on reload)."""
    root = logging.getLogger("opsagent")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False
