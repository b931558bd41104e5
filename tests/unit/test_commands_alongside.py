"""Commands that run alongside each other (hadeploy/engine/commands.py, `Command.alongside`):
the drain of one server on every balancer waits on each haproxy at once, not in turn."""

from __future__ import annotations

import threading

import pytest

from hadeploy.engine.commands import CommandRunner
from hadeploy.engine.lookahead import LookAhead
from hadeploy.errors import CommandFailed
from hadeploy.events import Emitter, Event
from hadeploy.ops.base import Command
from hadeploy.ops.drain import drained
from hadeploy.testing import FakeTransport
from tests.unit.haproxy_cli import LBS


def runner(transport: FakeTransport, events: list[Event]) -> CommandRunner:
    return CommandRunner(transport, LookAhead(False, lambda *_: None),  # type: ignore[arg-type]
                         Emitter(events.append, lambda text: text), threading.Event())


def on_each(key: str, *hosts: str) -> list[Command]:
    return [Command(f"echo {host}", on=host, alongside=key, summary=f"{host}: {key}")
            for host in hosts]


def test_a_group_runs_at_once_and_the_rest_in_order() -> None:
    transport = FakeTransport()
    inside = threading.Barrier(3, timeout=10)  # passes only while all three run at once
    ended: list[str] = []

    def answer(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        if host.startswith("lb"):
            inside.wait()
        ended.append(host)
        return 0, f"{host}\n", ""

    transport.on(answer)
    outputs: list[str] = []
    commands = [Command("echo before"), *on_each("drain", "lb1", "lb2", "lb3"),
                Command("echo restart"), *on_each("ready", "lb1", "lb2", "lb3")]
    runner(transport, []).run_all("ctl1", commands, "s", outputs)
    # the group's outputs in the commands' order, whichever ended first
    assert outputs == ["ctl1\n", "lb1\n", "lb2\n", "lb3\n", "ctl1\n", "lb1\n", "lb2\n", "lb3\n"]
    assert ended[0] == "ctl1" and ended[4] == "ctl1"  # the restart waited for every drain


def test_a_failure_in_a_group_is_raised_once_every_command_of_it_ended() -> None:
    transport = FakeTransport()
    ended: list[str] = []
    slow_may_end = threading.Event()

    def answer(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        if host == "lb2":
            return 1, "", "no such backend"
        if host == "lb3":
            slow_may_end.wait(0.3)
        ended.append(host)
        return 0, "", ""

    transport.on(answer)
    outputs: list[str] = []
    with pytest.raises(CommandFailed, match="lb2: drain"):
        runner(transport, []).run_all("ctl1", [*on_each("drain", "lb1", "lb2", "lb3"),
                                               Command("echo restart")], "s", outputs)
    assert sorted(ended) == ["lb1", "lb3"]  # lb3 ended, the restart never ran
    assert len(outputs) == 2


def test_commands_without_a_key_or_alone_in_theirs_run_in_turn() -> None:
    transport = FakeTransport()
    active = []
    peak = []
    lock = threading.Lock()

    def answer(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        with lock:
            active.append(host)
            peak.append(len(active))
        with lock:
            active.remove(host)
        return 0, "", ""

    transport.on(answer)
    commands = [Command("a", on="lb1"), Command("b", on="lb2"), *on_each("ready", "lb3")]
    runner(transport, []).run_all("ctl1", commands, "s", [])
    assert [h for h, _ in transport.calls] == ["lb1", "lb2", "lb3"] and max(peak) == 1


def test_a_drained_restart_drains_and_readies_on_every_balancer_alongside() -> None:
    """What the README promises of a drained restart: each balancer's drain (and its return to
    ready) is one group, the restart and the answer wait stand alone between them."""
    commands = drained(LBS, "ctl1", [Command("service glance-api restart")], "true")
    keys = [(c.on, c.alongside) for c in commands]
    lbs = list(LBS.hosts)
    assert keys == [*((lb, "drain") for lb in lbs), (None, ""), (None, ""),
                    *((lb, "ready") for lb in lbs)]
