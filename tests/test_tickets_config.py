"""The tickets section of the config: defaults, and bad input reported with file:line and key."""

import textwrap

import pytest

from agent.config import load_config
from agent.tickets import policy_from_config
from collector.schema import ConfigError


def load(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(textwrap.dedent(text))
    return load_config(p)


def test_defaults_reproduce_the_contract(tmp_path):
    cfg = load(tmp_path, "agent: {timezone: Asia/Shanghai}\n")
    pol = policy_from_config(cfg)
    assert pol.sla.dues("P1", 0.0)["respond"] == 1800
    assert [s.after for s in pol.ladder["P1"]] == [600, 3600, 4 * 3600, 24 * 3600]
    assert pol.routes == ()  # nothing is sent anywhere by default


def test_partial_sla_override_keeps_other_defaults(tmp_path):
    cfg = load(
        tmp_path,
        """
        tickets:
          sla:
            P3: {respond: 4h}
          escalation:
            P4: [{after: 2h, notify: [oncall]}]
          contacts:
            li: {name: 李工, email: li@example.com}
          groups:
            oncall: [li]
    """,
    )
    pol = policy_from_config(cfg)
    assert pol.sla.dues("P3", 0.0)["respond"] == 4 * 3600
    assert pol.sla.levels["P3"].restore.working_days == 2
    assert pol.recipients(["oncall"])[0].email == "li@example.com"


def test_bad_values_are_located(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(
            tmp_path,
            """
            tickets:
              contacts:
                li: {email: "li at example.com"}
              sla:
                P1: {respond: soon}
              notifiers:
                ding: {type: dingtalk}
                hook: {type: webhook, url: "https://example.com/hook?token=S3CRET x"}
                bare: {type: webhook, url: "https:///hook?token=S3CRET"}
                mail: {type: email, host: smtp.example.com, sender: "ops@", password: "${NO_SUCH_VAR_X}"}
              maintenance:
                - {name: nightly, hours: "25:00-02:00"}
        """,
        )
    text = str(e.value)
    for needle in [
        "c.yaml:4: tickets.contacts.li.email: invalid e-mail address 'li at example.com'",
        "c.yaml:6: tickets.sla.P1.respond: invalid duration",
        "tickets.notifiers.ding.url: a dingtalk notifier needs url",
        "tickets.notifiers.mail.password: environment variable NO_SUCH_VAR_X is not set",
        "tickets.maintenance[0]: time out of range",
        "tickets.notifiers.hook.url: must not contain spaces",
        "tickets.notifiers.bare.url: has no valid host name",
    ]:
        assert needle in text, (needle, text)
    assert "S3CRET" not in text


def test_unknown_names_in_groups_and_ladder(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(
            tmp_path,
            """
            tickets:
              contacts: {li: {email: li@example.com}}
              groups: {oncall: [li, wang]}
              escalation:
                P1: [{after: 10m, notify: [nobody]}]
              sla: {P2: {calendar: office}, p1: {respond: 10m}}
              notifiers:
                hook: {type: webhook, url: "https://example.com/hook", levels: [P1, p2]}
        """,
        )
    text = str(e.value)
    assert "tickets.sla.p1: unknown level 'p1' (use P1, P2, P3, P4)" in text
    assert "tickets.escalation.P1[0]" in text
    assert "tickets.notifiers.hook.levels: unknown level 'p2'" in text
    assert "tickets.groups.oncall: unknown contact 'wang'" in text
    assert "tickets.escalation.P1[0].notify: unknown contact or group 'nobody'" in text
    assert "tickets.sla.P2.calendar: unknown calendar 'office'" in text
