"""Ticket subcommands: ``tickets list|show|ack|note|resolve|close``, ``outbox [retry ID]``.

They work directly on the state file of ``-c CONFIG`` (``agent.state_file``);
WAL lets them run while the daemon does, and the daemon's outbox worker
delivers what they enqueue.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.cli_parser import Parser
from agent.errors import UserError

DEFAULT_CONFIG = Path("/etc/opsagent/config.yaml")
STATUSES = ("open", "acknowledged", "recovered", "resolved", "closed")
LEVELS = ("P1", "P2", "P3", "P4")  # rules.model.LEVELS, not imported: the parser is built at every start


def add_parsers(sub: Any) -> None:
    """Register ``tickets`` and ``outbox`` on ``sub`` (an argparse subparsers object)."""
    common = Parser(add_help=False)
    common.add_argument("-c", "--config", type=Path, help=f"config file (default {DEFAULT_CONFIG})")
    common.add_argument("--by", default="", help="who does this (default: the login name)")
    # under ``outbox``, whose own -c must not be reset by the subcommand's default
    inner = Parser(add_help=False)
    inner.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS, help="config file")

    p = sub.add_parser("tickets", help="list and work tickets")
    tsub = p.add_subparsers(dest="tickets_command", metavar="COMMAND")
    tsub.required = True
    c = tsub.add_parser("list", parents=[common], help="list tickets, newest first")
    c.add_argument("--status", action="append", choices=STATUSES, help="only this status (repeatable)")
    c.add_argument("--level", action="append", choices=LEVELS, help="only this level (repeatable)")
    c.add_argument("--json", action="store_true", help="JSON output")
    c.set_defaults(func=cmd_list)
    c = tsub.add_parser("show", parents=[common], help="one ticket with its journal")
    c.add_argument("id", type=int)
    c.add_argument("--json", action="store_true", help="JSON output")
    c.set_defaults(func=cmd_show)
    for action, help_text, note_help in (
        ("ack", "acknowledge (stops the response clock)", "text for the journal"),
        ("note", "add a note to the journal", ""),
        ("resolve", "resolve (or confirm a recovered ticket)",
         "required: the cause and what was done (recorded for the problem report)"),
        ("close", "close for good", "text for the journal"),
    ):
        c = tsub.add_parser(action, parents=[common], help=help_text)
        c.add_argument("id", type=int)
        if action == "resolve":
            c.add_argument("--note", required=True, metavar="TEXT", help=note_help)
        elif note_help:
            c.add_argument("--note", default="", help=note_help)
        else:
            c.add_argument("text")
        c.set_defaults(func=cmd_action, action=action)

    p = sub.add_parser("outbox", parents=[common], help="list pending and dead notifications; retry one")
    osub = p.add_subparsers(dest="outbox_command", metavar="COMMAND")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_outbox)
    c = osub.add_parser("retry", parents=[inner], help="re-queue a dead entry for delivery now")
    c.add_argument("id", type=int)
    c.set_defaults(func=cmd_outbox_retry)


@contextmanager
def _book(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """(store, ticket book) of ``args.config``'s state file; the store is closed on exit."""
    from agent.cli_store import open_store
    from agent.config import load_config
    from agent.tickets import TicketBook, policy_from_config

    config = load_config(args.config or DEFAULT_CONFIG)
    if not Path(config.agent.state_file).exists():
        raise UserError(f"no state file at {config.agent.state_file} (has the agent run yet?)")
    store = open_store(config.agent.state_file)
    try:
        yield store, TicketBook(store, policy_from_config(config))
    finally:
        store.close()


def _print_json(obj: Any) -> int:
    """``obj`` as indented JSON on stdout (UTF-8 kept readable); the command's exit status."""
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=1)
    print()
    return 0


def _when(book: Any, ts: float | None) -> str:
    """``ts`` in the agent's time zone (``agent.timezone``), as notifications show it,
    whatever the zone of the shell running the command."""
    return "-" if ts is None else dt.datetime.fromtimestamp(ts, book.policy.tz).strftime("%Y-%m-%d %H:%M")


def cmd_list(args: argparse.Namespace) -> int:
    with _book(args) as (_, book):
        rows = book.list_tickets(args.status or (), args.level or ())
    when = functools.partial(_when, book)
    if args.json:
        return _print_json(rows)
    print(f"{'ID':>5}  {'LEVEL':5}  {'STATUS':12}  {'OPENED':16}  {'RESPOND BY':16}  {'N':>4}  SUMMARY")
    for t in rows:
        print(
            f"{t['id']:>5}  {t['level']:5}  {t['status']:12}  {when(t['opened_at']):16}  "
            f"{when(t['respond_due']):16}  {t['occurrences']:>4}  {t['summary']}"
        )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    with _book(args) as (_, book):
        t = book.get(args.id)
    when = functools.partial(_when, book)
    if args.json:
        return _print_json(t)
    print(f"Ticket #{t['id']}  {t['level']}  {t['status']}  {t['summary']}")
    for k in ("rule", "instance", "fingerprint", "source", "occurrences", "escalation_stage", "breached"):
        print(f"  {k}: {t[k]}")
    for k in (
        "opened_at",
        "acknowledged_at",
        "restored_at",
        "resolved_at",
        "closed_at",
        "respond_due",
        "restore_due",
        "resolve_due",
    ):
        print(f"  {k}: {when(t[k])}")
    print("  labels: " + ", ".join(f"{k}={v}" for k, v in sorted(t["labels"].items())))
    for k in ("description", "solution", "evidence"):
        if t[k]:
            print(f"  {k}: {t[k]}")
    print("Journal:")
    for j in t["journal"]:
        # multi-line entries (evidence) continue under the text column
        text = j["text"].replace("\n", "\n" + " " * 47)
        print(f"  {when(j['at'])}  {j['who']:10}  {j['kind']:13}  {text}")
    return 0


def cmd_action(args: argparse.Namespace) -> int:
    import getpass  # termios, pwd: only for this command, not in the daemon

    who = args.by or getpass.getuser()
    now = time.time()
    with _book(args) as (_, book):
        if args.action == "ack":
            t = book.ack(args.id, who, now, args.note)
        elif args.action == "note":
            t = book.note(args.id, who, args.text, now)
        elif args.action == "resolve":
            t = book.resolve(args.id, who, now, args.note)
        else:
            t = book.close(args.id, who, now, args.note)
    print(f"ticket {args.id}: {t['status']}")
    return 0


def cmd_outbox(args: argparse.Namespace) -> int:
    from agent.outbox import list_entries

    with _book(args) as (store, book), store.read() as db:
        entries = list_entries(db)
    when = functools.partial(_when, book)
    if args.json:
        return _print_json([e.__dict__ for e in entries])
    print(
        f"{'ID':>6}  {'STATUS':8}  {'CHANNEL':12}  {'TICKET':>6}  {'TRIES':>5}  {'NEXT':16}"
        "  TITLE / LAST ERROR"
    )
    for e in entries:
        print(
            f"{e.id:>6}  {e.status:8}  {e.channel:12}  {e.ticket_id or '-':>6}  {e.attempts:>5}  "
            f"{when(e.next_at) if e.status == 'pending' else '-':16}  {e.title}"
            + (f"  [{e.last_error}]" if e.last_error else "")
        )
    return 0


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    from agent.outbox import requeue

    with _book(args) as (store, _), store.tx() as db:
        try:
            e = requeue(db, args.id, time.time())
        except KeyError:
            raise UserError(f"no outbox entry {args.id} (see `opsagent outbox`)") from None
        except ValueError as err:
            raise UserError(str(err)) from None
    print(f"outbox entry {e.id} queued for delivery via {e.channel}")
    return 0
