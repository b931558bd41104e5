"""Running one command of an operation or an undo on a host, as the engine must."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from hadeploy import framing
from hadeploy.engine.lookahead import LookAhead
from hadeploy.errors import CommandFailed, Interrupted
from hadeploy.events import Emitter
from hadeploy.journal import Journal
from hadeploy.ops.base import Command
from hadeploy.transport.base import Result, Transport


def stopped() -> Interrupted:
    """The error that ends work once the operator asked to stop."""
    return Interrupted("stopped at the operator's request")


class CommandRunner:
    """Runs commands: honours the stop request, feeds stdin read from another host, tells
    the look-ahead that probes taken earlier may be stale, and emits a `notice` event before
    a command that has one, a `command` event after each, and a `notice` event for each line
    the host tagged `@@notice` (what the operator must know of what the host did)."""

    def __init__(self, transport: Transport, lookahead: LookAhead, emit: Emitter,
                 stop: threading.Event) -> None:
        self.transport = transport
        self.lookahead = lookahead
        self.emit = emit
        self.stop = stop
        # (host, journal) -> lines to run first: the host's own record of the run
        self.records: Callable[[str, Journal], str] | None = None

    def run(self, host: str, command: Command, step_id: str | None,
            interruptible: bool = True, journal: Journal | None = None) -> Result:
        """Run `command` on `host`; raise `CommandFailed` (holding the result) if it fails,
        `Interrupted` before it starts if the operator asked to stop (unless not
        `interruptible`: the undo of a failed step finishes anyway). A change of `journal`'s
        run on `host` itself carries the host's record of it along (`hoststate`)."""
        if interruptible and self.stop.is_set():
            raise stopped()
        # The host's record rides on its own commands only: one run on a balancer for it (a
        # drain) would leave the controller's record of the run on the balancer.
        if journal is not None and self.records is not None and command.on in (None, host):
            ahead = self.records(host, journal)
            command = replace(command, script=ahead + command.script, summary=command.shown())
        stdin = command.stdin
        if command.stdin_from is not None:
            source = command.stdin_from
            stdin = framing.carried(self.transport.read(source.host, source.script))
        if command.notice:
            self.emit("notice", step_id, host, text=command.notice)
        started = time.monotonic()
        self.lookahead.command_ran()
        # Events stay the operation's host's: a command run elsewhere names its host itself.
        result = self.transport.run(command.on or host, command.script, stdin=stdin)
        self.emit("command", step_id, host, command=command.shown(), exited=result.exited,
                  duration=round(time.monotonic() - started, 3))
        for words in framing.tagged_words(framing.NOTICE, result.stdout):
            self.emit("notice", step_id, host, text=" ".join(words))
        return result.check(command.shown())

    def keep_record(self, host: str, journal: Journal) -> None:
        """Write `host`'s record of `journal`'s run there now, in a round trip of its own:
        for commands that run beside others on the host and so carry none (two writers of
        the one record file at once would race)."""
        ahead = self.records(host, journal) if self.records is not None else ""
        if ahead:
            self.transport.run(host, ahead + "true").check("keep the run's record on the host")

    def run_all(self, host: str, commands: Sequence[Command], step_id: str | None,
                outputs: list[str], interruptible: bool = True,
                journal: Journal | None = None) -> None:
        """Run `commands` in order as `run` does, adding each one's stdout to `outputs`;
        consecutive commands with the same `alongside` key run at once, and the first of
        their failures is raised once every one of them has ended."""
        for key, group in itertools.groupby(commands, lambda c: c.alongside):
            together = list(group)
            if not key or len(together) == 1:
                for command in together:
                    outputs.append(self.run(host, command, step_id, interruptible,
                                            journal).stdout)
                continue
            with ThreadPoolExecutor(len(together)) as pool:
                futures = [pool.submit(self.run, host, command, step_id, interruptible,
                                       journal) for command in together]
            failures: list[Exception] = []
            for future in futures:
                try:
                    outputs.append(future.result().stdout)
                except (CommandFailed, Interrupted) as exc:
                    failures.append(exc)
            if failures:
                raise failures[0]
