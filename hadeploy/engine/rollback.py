"""Rollback: undo journaled changes from their records alone, newest run and step first.

Undo works from the journal and the `UNDO` registry, not from the runbook, so it still works
after the inventory or hadeploy changed. Undo commands marked `deferred` (a restart once the
configuration it was made for is restored) wait until every other undo of the run is done.

Hosts that served before the run (it restarted a service there: the original controller) are
restored first, deferred restarts included, while the hosts the run brought in still serve;
only then are those torn down. Undoing every step on every host at once would stop the new
controllers' APIs before the original's drained restart, leaving haproxy no server for a
while.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hadeploy.engine.commands import CommandRunner
from hadeploy.engine.contexts import HostContexts
from hadeploy.engine.failures import failure_fields, raise_failures
from hadeploy.engine.group import on_hosts
from hadeploy.errors import HadeployError, Interrupted, JournalError
from hadeploy.events import Emitter
from hadeploy.journal import Journal, JournalWriter, live_changes, now
from hadeploy.ops import UNDO
from hadeploy.ops.base import Command, HostContext
from hadeploy.outcome import HostOutcome

Deferred = dict[str, list[Command]]  # host -> commands to run after every other undo


def serving_first(journal: Journal) -> list[frozenset[str]]:
    """The hosts of `journal` in the order they are restored: those where a service ran before
    the run (recorded `was_running`), then the others; rolled-back changes count too, so
    that a resumed rollback keeps the order."""
    hosts = {h for step in journal.steps for h in step.hosts}
    serving = frozenset(h for step in journal.steps for h, entry in step.hosts.items()
                        for change in entry.changes
                        if (change.get("record") or {}).get("was_running"))
    return [group for group in (serving, frozenset(hosts) - serving) if group]


class Undoer:
    """Undoes the changes of a failed host step, or of whole runs into a rollback journal."""

    def __init__(self, runner: CommandRunner, writer: JournalWriter, emit: Emitter,
                 contexts: HostContexts, redact: Callable[[str], str], limit: int) -> None:
        self.runner = runner
        self.writer = writer
        self.emit = emit
        self.contexts = contexts
        self.redact = redact
        self.limit = limit
        self._lock = threading.Lock()

    def undo_changes(self, host: str, ctx: HostContext, changes: list[dict[str, Any]],
                     step_id: str, journal: Journal | None, deferred: Deferred | None = None,
                     interruptible: bool = True) -> None:
        """Undo `changes` on `host`, newest first, marking each as rolled back; deferred
        commands go to `deferred` when given, else run in turn."""
        for change in reversed(changes):
            if change.get("rolled_back") or not change.get("record"):
                continue
            kind = change["record"].get("kind")
            undo = UNDO.get(kind) if isinstance(kind, str) else None
            if undo is None:
                raise JournalError(
                    f"step {step_id} recorded a change of unknown kind {kind!r} "
                    f"({change.get('title')}); this version of hadeploy cannot undo it",
                    host=host)
            now_run: list[Command] = []
            for command in undo(ctx, change["record"]):
                if command.deferred and deferred is not None:
                    with self._lock:
                        queue = deferred.setdefault(host, [])
                        if command not in queue:
                            queue.append(command)
                    continue
                now_run.append(command)
            self.runner.run_all(host, now_run, step_id, [], interruptible)
            change["rolled_back"] = True
            self.writer.save(journal)

    def rollback(self, journals: list[Journal], log: Journal) -> None:
        """Undo every change recorded in `journals` (newest run, newest step first)."""
        for journal in sorted(journals, key=lambda j: j.run_id, reverse=True):
            self.contexts.apply_facts({h: f for h, f in journal.facts.items()
                                       if h in self.contexts.nodes})
            for hosts in serving_first(journal):
                deferred: Deferred = {}
                for step in reversed(journal.steps):
                    self._rollback_step(journal, step.id, log, deferred, hosts)
                self._run_deferred(journal.run_id, deferred)
            # A second rollback finds nothing to undo; the first one keeps the credit.
            if journal.rolled_back_by is None:
                journal.rolled_back_by = log.run_id
            self.writer.save(journal)

    def _rollback_step(self, journal: Journal, step_id: str, log: Journal,
                       deferred: Deferred, only: frozenset[str]) -> None:
        step = journal.step(step_id)
        hosts = [h for h, e in step.hosts.items() if live_changes(e) and h in only]
        if not hosts:
            return
        entry = log.ensure_step(f"{journal.run_id}/{step_id}", f"undo {step.title}", hosts)
        self.writer.save(log)
        self.emit("step-started", entry.id, title=entry.title, hosts=hosts)

        def undo(host: str) -> HostOutcome:
            host_entry = entry.hosts[host]
            host_entry.state, host_entry.started, host_entry.error = "running", now(), None
            self.writer.save(log)
            ctx = replace(self.contexts.context(step_id, host, None), run_id=journal.run_id)
            try:
                self.undo_changes(host, ctx, step.hosts[host].changes, step_id, journal,
                                  deferred)
            except Interrupted as exc:
                host_entry.state, host_entry.error = "pending", "interrupted by the operator"
                return HostOutcome(host, "interrupted", exc)
            except HadeployError as exc:
                host_entry.state, host_entry.error = "failed", str(exc)
                self.emit("host-failed", entry.id, host, **failure_fields(exc, host))
                return HostOutcome(host, "failed", exc)
            step.hosts[host].state = "rolled-back"
            host_entry.state, host_entry.finished = "changed", now()
            self.writer.save(journal)
            self.writer.save(log)
            self.emit("host-rolled-back", entry.id, host)
            return HostOutcome(host, "rolled-back")

        outcomes = on_hosts(hosts, undo, self.limit)
        self.writer.save(log)
        raise_failures(entry.id, outcomes, self.redact)

    def _run_deferred(self, run_id: str, deferred: Deferred) -> None:
        """Commands an undo asked to run last (restarts after restored files), per host."""
        step_id = f"{run_id}/deferred"

        def run_all(host: str) -> HostOutcome:
            try:
                self.runner.run_all(host, deferred[host], step_id, [])
            except Interrupted as exc:
                return HostOutcome(host, "interrupted", exc)
            except HadeployError as exc:
                return HostOutcome(host, "failed", exc)
            return HostOutcome(host, "changed")

        raise_failures(step_id, on_hosts(sorted(deferred), run_all, self.limit), self.redact)

