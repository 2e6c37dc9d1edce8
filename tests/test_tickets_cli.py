"""`opsagent tickets` on a state file, as an operator runs it: times in the agent's time zone."""

import json

import yaml

from agent.config import load_config
from agent.store import Store
from agent.tickets import TicketBook, policy_from_config
from tests.daemon_harness import cli
from tests.test_tickets import ev

OPENED = 1_726_192_800.0  # 2024-09-13 02:00 UTC = 10:00 in Shanghai


def test_cli_shows_times_in_the_agent_time_zone_like_the_notifications(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({
        "agent": {"state_file": str(tmp_path / "state.db"), "timezone": "Asia/Shanghai"},
        "tickets": {"sla": {"P2": {"respond": "1h"}}},
    }))
    store = Store(tmp_path / "state.db")
    try:
        TicketBook(store, policy_from_config(load_config(path))).apply([ev("P2")], OPENED)
    finally:
        store.close()

    # the machine's own zone (UTC here) must not shift what the operator reads
    out = cli("tickets", "list", "-c", str(path), env={"TZ": "UTC"})
    assert out.returncode == 0, out.stderr
    assert "2024-09-13 10:00" in out.stdout and "2024-09-13 11:00" in out.stdout  # opened, respond by
    out = cli("tickets", "show", "1", "-c", str(path), env={"TZ": "UTC"})
    assert "opened_at: 2024-09-13 10:00" in out.stdout
    assert "2024-09-13 10:00  opsagent" in out.stdout  # the journal too
    out = cli("tickets", "list", "--json", "-c", str(path))
    assert json.loads(out.stdout)[0]["opened_at"] == OPENED  # JSON keeps epoch seconds


def test_cli_refuses_an_unknown_level_instead_of_listing_nothing(tmp_path):
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump({"agent": {"state_file": str(tmp_path / "state.db")}}))
    Store(tmp_path / "state.db").close()
    out = cli("tickets", "list", "--level", "p1", "-c", str(path))
    assert out.returncode == 2 and "invalid choice: 'p1'" in out.stderr
