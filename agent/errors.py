"""Errors that are the user's to fix: shown as one line, never a traceback."""


class UserError(Exception):
    """A mistake in a command line, a file or an id; the message says what to do."""
