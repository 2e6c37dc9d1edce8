"""Fixtures shared by several test modules."""

import pytest

from tests.ticket_peers import Receiver


@pytest.fixture
def receiver_factory():
    """Make loopback HTTP receivers (``Receiver(**kw)``); all are closed after the test."""
    made = []

    def make(**kw):
        r = Receiver(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()
