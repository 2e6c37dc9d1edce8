"""Typed YAML: validate a YAML document into frozen dataclasses.

Every problem names the file, the line and the key path, and all problems
are collected before one ``ConfigError`` is raised. Supported field types:
``str int float bool``, ``Duration``, ``Secret``, ``Regex``, ``Literal``,
``X | None``, ``tuple[T, ...]``, ``dict[str, T]``, nested dataclasses and
``Any`` (kept as plain YAML data).

A field of type ``Secret`` named ``password`` is filled from ``password``
(with ``${ENV}`` expanded) or from ``password_file`` (the file's content,
stripped), so no secret ever has to be written inline.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

import yaml


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation problem, located."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '(top)'}: {self.message}"


class ConfigError(Exception):
    """One or more problems found in a configuration or rule file."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class Duration(float):
    """Seconds, written in Prometheus' duration syntax: ``15s``, ``1h30m``, ``500ms``."""

    _UNITS: typing.ClassVar[dict[str, float]] = {
        "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000,
    }
    _RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")

    @classmethod
    def parse(cls, text: str) -> Duration:
        text = text.strip()
        pos, total = 0, 0.0
        if not text:
            raise ValueError("empty duration")
        while pos < len(text):
            m = cls._RE.match(text, pos)
            if not m:
                raise ValueError(f"invalid duration {text!r} (use e.g. 30s, 5m, 1h30m)")
            total += float(m.group(1)) * cls._UNITS[m.group(2)]
            pos = m.end()
        return cls(total)

    def __str__(self) -> str:
        s = float(self)
        for unit in ("w", "d", "h", "m", "s"):
            size = self._UNITS[unit]
            if s >= size and s % size == 0:
                return f"{int(s // size)}{unit}"
        return f"{round(s * 1000)}ms"


class Secret(str):
    """A secret string: never shown by ``repr``/``str`` formatting in logs."""

    def __repr__(self) -> str:
        return "Secret('****')"

    def reveal(self) -> str:
        return str.__str__(self)

    def __str__(self) -> str:
        return "****"


class Regex(str):
    """A user-supplied regular expression, checked at load with the linear-time RE2 engine."""


ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def compile_regex(pattern: str) -> Any:
    """Compile ``pattern`` with RE2 (linear time); fall back to ``re`` only if RE2 is missing."""
    try:
        import re2  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:  # pragma: no cover - RE2 is a dependency
        return re.compile(pattern)
    opts = re2.Options()
    opts.log_errors = False
    return re2.compile(pattern, opts)


# ---------------------------------------------------------------- YAML with marks


class _Loader(yaml.SafeLoader):
    pass


def compose(text: str, file: str) -> yaml.Node | None:
    """Parse YAML text into a node tree that keeps line numbers."""
    try:
        return yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([Problem(file, line, "", f"invalid YAML: {e.problem or e}")]) from None
    except yaml.YAMLError as e:
        raise ConfigError([Problem(file, 0, "", f"invalid YAML: {e}")]) from None


def read_document(path: str | Path) -> tuple[yaml.Node | None, str]:
    """Read and compose a YAML file; a missing or unreadable file is a ConfigError."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem(file, 0, "", "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(file, 0, "", f"cannot read: {e}")]) from None
    return compose(text, file), file


def plain(node: yaml.Node | None) -> Any:
    """Turn a node tree into plain Python data (for ``Any`` fields)."""
    if node is None:
        return None
    loader = _Loader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()


def line_of(node: yaml.Node | None) -> int:
    return node.start_mark.line + 1 if node is not None else 0


# ---------------------------------------------------------------- validation


class Builder:
    """Validates nodes against types, collecting problems."""

    def __init__(self, file: str, base_dir: Path | None = None):
        self.file = file
        self.base_dir = base_dir or Path(file).resolve().parent
        self.problems: list[Problem] = []

    def error(self, node: yaml.Node | None, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, line_of(node), path, message))

    # -- entry point
    def build(self, tp: Any, node: yaml.Node | None, path: str = "") -> Any:
        return self._value(tp, node, path)

    def _value(self, tp: Any, node: yaml.Node | None, path: str) -> Any:
        origin = typing.get_origin(tp)
        if tp is Any:
            return plain(node)
        if origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if node is None or _is_null(node):
                return None
            return self._value(args[0] if len(args) == 1 else Any, node, path)
        if origin is Literal:
            choices = typing.get_args(tp)
            v = self._scalar(node, path)
            if v is _BAD:
                return None
            if v not in choices:
                self.error(node, path, f"must be one of {', '.join(map(str, choices))}; got {v!r}")
                return None
            return v
        if origin in (tuple, list):
            targs = typing.get_args(tp)
            item_tp = targs[0] if targs else Any
            if not isinstance(node, yaml.SequenceNode):
                self.error(node, path, "must be a list")
                return ()
            return tuple(self._value(item_tp, n, f"{path}[{i}]") for i, n in enumerate(node.value))
        if origin in (dict, Mapping) or origin is typing.get_origin(Mapping[str, int]):
            targs = typing.get_args(tp)
            val_tp = targs[1] if len(targs) == 2 else Any
            return self.mapping(node, path, lambda key: val_tp)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return self.dataclass(tp, node, path)
        return self._leaf(tp, node, path)

    def mapping(
        self, node: yaml.Node | None, path: str, value_type: Callable[[str], Any | None]
    ) -> dict[str, Any]:
        """A mapping whose value type may depend on its key (``None``: unknown key)."""
        out: dict[str, Any] = {}
        if node is None or _is_null(node):
            return out
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, "must be a mapping")
            return out
        for knode, vnode in node.value:
            key = str(knode.value)
            sub = f"{path}.{key}" if path else key
            if key in out:
                self.error(knode, sub, "duplicate key")
                continue
            tp = value_type(key)
            if tp is None:
                self.error(knode, sub, "unknown key")
                continue
            out[key] = self._value(tp, vnode, sub)
        return out

    def dataclass(self, cls: type, node: yaml.Node | None, path: str) -> Any:
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.metadata.get("internal")}
        given: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        if node is not None and not _is_null(node):
            if not isinstance(node, yaml.MappingNode):
                self.error(node, path, "must be a mapping")
                return None
            for knode, vnode in node.value:
                key = str(knode.value)
                if key in given:
                    self.error(knode, f"{path}.{key}" if path else key, "duplicate key")
                given[key] = (knode, vnode)
        secret_files = {f"{n}_file": n for n, t in hints.items() if n in fields and _is_secret(t)}
        for key, (knode, _) in given.items():
            if key not in fields and key not in secret_files:
                sub = f"{path}.{key}" if path else key
                hint = _close_match(key, list(fields) + list(secret_files))
                self.error(knode, sub, "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""))
        kwargs: dict[str, Any] = {}
        failed: set[str] = set()  # fields with a problem of their own
        for name, f in fields.items():
            before = len(self.problems)
            sub = f"{path}.{name}" if path else name
            tp = hints[name]
            resolver = f.metadata.get("value_type")
            if name in given:
                vnode = given[name][1]
                if resolver is not None:
                    kwargs[name] = self.mapping(vnode, sub, resolver)
                elif _is_secret(tp):
                    kwargs[name] = self._secret(vnode, sub)
                else:
                    kwargs[name] = self._value(tp, vnode, sub)
            elif f"{name}_file" in given and _is_secret(tp):
                kwargs[name] = self._secret_file(given[f"{name}_file"][1], f"{sub}_file")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                self.error(node, sub, "required key is missing")
            if len(self.problems) > before:
                failed.add(name)
        if failed:
            # The object's own checks still run, on the defaults of the failed
            # fields, so that every problem is reported at once; what they say
            # about a failed field (or the whole object) is left out.
            if any(fields[n].default is dataclasses.MISSING
                   and fields[n].default_factory is dataclasses.MISSING for n in failed):
                return None
            try:
                partial = cls(**{k: v for k, v in kwargs.items() if k not in failed})
            except (TypeError, ValueError):
                return None
            self._check(partial, node, path, failed)
            return None
        try:
            obj = cls(**kwargs)
        except (TypeError, ValueError) as e:
            self.error(node, path, str(e))
            return None
        self._check(obj, node, path, set())
        return obj

    def _check(self, obj: Any, node: yaml.Node | None, path: str, skip: set[str]) -> None:
        """Record the problems of ``obj.check()`` (key paths relative to ``obj``), located."""
        check = getattr(obj, "check", None)
        if not callable(check):
            return
        for subkey, message in check():
            first = subkey.split(".")[0].split("[")[0]
            if skip and (not subkey or first in skip):
                continue
            sub = f"{path}.{subkey}" if path and subkey else (subkey or path)
            self.error(_node_at(node, subkey), sub, message)

    def _scalar(self, node: yaml.Node | None, path: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, "must be a single value")
            return _BAD
        return plain(node)

    def _leaf(self, tp: Any, node: yaml.Node | None, path: str) -> Any:
        v = self._scalar(node, path)
        if v is _BAD:
            return None
        if tp is bool:
            if not isinstance(v, bool):
                self.error(node, path, f"must be true or false; got {v!r}")
                return None
            return v
        if tp is int:
            if isinstance(v, bool) or not isinstance(v, int):
                self.error(node, path, f"must be an integer; got {v!r}")
                return None
            return v
        if tp is float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.error(node, path, f"must be a number; got {v!r}")
                return None
            return float(v)
        if tp is Duration:
            if isinstance(v, int | float) and not isinstance(v, bool):
                return Duration(v)
            try:
                return Duration.parse(str(v))
            except ValueError as e:
                self.error(node, path, str(e))
                return None
        if tp is Regex:
            try:
                compile_regex(str(v))
            except Exception as e:  # re2.error and re.error share no base class
                why = e.args[0] if e.args else e
                why = why.decode(errors="replace") if isinstance(why, bytes) else why
                self.error(node, path, f"invalid regular expression {v!r}: {why}")
                return None
            return Regex(str(v))
        if tp is Path:
            if not isinstance(v, str) or not v:
                self.error(node, path, "must be a path")
                return None
            p = Path(os.path.expanduser(v))
            return p if p.is_absolute() else self.base_dir / p
        if tp is str:
            if v is None or isinstance(v, dict | list):
                self.error(node, path, "must be a string")
                return None
            return v if isinstance(v, str) else str(v) if not isinstance(v, bool) else str(v).lower()
        self.error(node, path, f"unsupported type {tp!r}")  # a schema bug, reported not raised
        return None

    def _secret(self, node: yaml.Node, path: str) -> Secret | None:
        v = self._scalar(node, path)
        if v is _BAD or v is None:
            return None
        text = str(v)
        missing = [m.group(1) for m in ENV_RE.finditer(text) if m.group(1) not in os.environ]
        if missing:
            self.error(node, path, f"environment variable {missing[0]} is not set")
            return None
        return Secret(ENV_RE.sub(lambda m: os.environ[m.group(1)], text))

    def _secret_file(self, node: yaml.Node, path: str) -> Secret | None:
        p = self._leaf(Path, node, path)
        if p is None:
            return None
        try:
            return Secret(Path(p).read_text(encoding="utf-8").strip())
        except OSError as e:
            self.error(node, path, f"cannot read secret file {p}: {e.strerror or e}")
            return None


_BAD = object()


_PATH_PART_RE = re.compile(r"\[\d+\]|[^.\[\]]+")


def _node_at(node: yaml.Node | None, subkey: str) -> yaml.Node | None:
    """The value node a key path (``users.bob``, ``steps[1].after``) names, as deep as it exists."""
    cur = node
    for part in _PATH_PART_RE.findall(subkey):
        nxt: yaml.Node | None = None
        if isinstance(cur, yaml.MappingNode):
            nxt = next((v for k, v in cur.value if str(k.value) == part), None)
        elif isinstance(cur, yaml.SequenceNode) and part.startswith("["):
            i = int(part[1:-1])
            nxt = cur.value[i] if i < len(cur.value) else None
        if nxt is None:
            break
        cur = nxt
    return cur


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _is_secret(tp: Any) -> bool:
    if tp is Secret:
        return True
    return typing.get_origin(tp) in (Union, types.UnionType) and Secret in typing.get_args(tp)


def _close_match(key: str, options: list[str]) -> str | None:
    import difflib

    m = difflib.get_close_matches(key, options, n=1, cutoff=0.75)
    return m[0] if m else None


T = typing.TypeVar("T")


def load(cls: type[T], path: str | Path) -> T:
    """Read ``path`` and validate it into ``cls``; raise ConfigError with every problem."""
    node, file = read_document(path)
    b = Builder(file)
    obj = b.build(cls, node)
    if b.problems:
        raise ConfigError(b.problems)
    return typing.cast(T, obj)
