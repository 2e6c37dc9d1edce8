"""Errors of the PromQL subset: at parse time (load time) and at evaluation time."""

from __future__ import annotations


class PromQLError(Exception):
    """A PromQL expression that cannot be parsed or is not supported; ``pos`` is the character offset."""

    def __init__(self, message: str, pos: int = 0):
        super().__init__(message)
        self.message = message
        self.pos = pos

    def __str__(self) -> str:
        return self.message


class EvalError(PromQLError):
    """A query that parses but fails on the data, e.g. many-to-many matching or duplicate label sets."""
