"""The step executor: one step on its hosts, each host's part ending in a `HostOutcome`.

Per host: one round trip runs every operation's probe (batched, maybe taken ahead) plus
the probes an operation needs on other hosts; operations already done are `ok`; the others
are journaled (intent first, so an interrupted command can still be undone) and applied,
command by command; one more round trip re-probes and verifies, and the host is `changed`.
A failure undoes that step's changes on that host (when it is reachable) and is returned,
not raised, so the other hosts finish their part.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from hadeploy.engine.commands import CommandRunner, stopped
from hadeploy.engine.contexts import HostContexts
from hadeploy.engine.failures import failure_fields
from hadeploy.engine.group import on_hosts
from hadeploy.engine.probing import OP_ERRORS, Prober, op_errors, read_all
from hadeploy.engine.rollback import Undoer
from hadeploy.errors import CommandFailed, HadeployError, Interrupted, TransportError
from hadeploy.events import Emitter
from hadeploy.journal import HostEntry, Journal, JournalWriter, live_changes, now
from hadeploy.ops.base import AnyOp, HostContext
from hadeploy.outcome import HostOutcome, OutcomeState
from hadeploy.steps import Step


class StepExecutor:
    """Runs steps host by host (in parallel unless the step is serial)."""

    def __init__(self, prober: Prober, runner: CommandRunner, undoer: Undoer,
                 writer: JournalWriter, emit: Emitter, contexts: HostContexts,
                 stop: threading.Event, limit: int) -> None:
        self.prober = prober
        self.runner = runner
        self.undoer = undoer
        self.writer = writer
        self.emit = emit
        self.contexts = contexts
        self.stop = stop
        self.limit = limit

    def run_hosts(self, step: Step, hosts: list[str], journal: Journal) -> dict[str, HostOutcome]:
        """Run `step` on `hosts`; a serial step stops at the first host that does not succeed
        (the hosts after it have no outcome)."""

        def work(host: str) -> HostOutcome:
            return self.host_step(step, host, journal)

        # A serial step that look-ahead probes show done everywhere restarts nothing: its
        # order does not matter, and finding the VIP holder would cost a round trip.
        if not step.serial or all(self._done_ahead(step, h, journal) for h in hosts):
            return on_hosts(hosts, work, self.limit)
        outcomes: dict[str, HostOutcome] = {}
        if step.starts_together:
            quiet = on_hosts(hosts, lambda h: not self._interrupts(step, h, journal), self.limit)
            outcomes = on_hosts([h for h in hosts if quiet[h]], work, self.limit)
            if not all(o.succeeded for o in outcomes.values()):
                return outcomes
            hosts = [h for h in hosts if not quiet[h]]
        ordered, one_by_one = self._serial_order(step, hosts)
        if not one_by_one:  # nobody to keep serving: the first host alone, then the rest
            outcomes[ordered[0]] = work(ordered[0])
            if outcomes[ordered[0]].succeeded:
                outcomes.update(on_hosts(ordered[1:], work, self.limit))
            return outcomes
        for host in ordered:
            outcomes[host] = work(host)
            if not outcomes[host].succeeded:
                break
        return outcomes

    def _serial_order(self, step: Step, hosts: list[str]) -> tuple[list[str], bool]:
        """The order of a serial step, and whether it must really go one host at a time.

        Hosts printing `last` (the VIP holder) go after the others, one by one. When a
        `last_probe` finds no such host (a first deploy: nobody holds the VIP yet), nothing
        is being served that a restart could interrupt: the first host goes alone, which
        keeps the head start a one-by-one order gives it (the highest keepalived priority
        wins the VIP at once), and the others then go together.
        """
        if not step.last_probe:
            return hosts, True
        last_probe = step.last_probe

        def is_last(host: str) -> bool:
            return self.prober.stdout(host, last_probe).strip() == "last"

        last = on_hosts(hosts, is_last, self.limit)
        return [h for h in hosts if not last[h]] + [h for h in hosts if last[h]], any(
            last.values())

    def _interrupts(self, step: Step, host: str, journal: Journal) -> bool:
        """Whether bringing `host` to what `step` wants interrupts something it serves, from
        valid look-ahead probes, else one probe now (an unreadable state: assume it does)."""
        ctx = self.contexts.context(step.id, host, journal)
        ops = list(step.ops[host])
        try:
            probes = self.prober.ahead(step, host, ctx)
            if probes is None:  # probe now, later steps along; the step's turn reuses it
                generation = self.prober.lookahead.generation
                probes = self.prober.probe_step(step, host, ctx, journal)
                self.prober.lookahead.keep(host, generation, step.id, probes)
            return any(not op.done(ctx, seen) and op.interrupts(ctx, seen)
                       for op, seen in zip(ops, read_all(host, ops, ctx, probes), strict=True))
        except (HadeployError, *OP_ERRORS):
            return True  # the host's own step says what is wrong, in its turn

    def read_sources_first(self, step: Step, hosts: list[str], journal: Journal) -> None:
        """Read, one batch per host, what `step`'s probes on `hosts` (and their later steps',
        taken along) compare with on other hosts (a tree copy's source), as their probes
        would: before a host probed early (`probe_before_turn`) takes its connection for
        a longer probe of its own."""
        generation = self.prober.lookahead.generation
        reads = []
        for host in hosts:
            ctx = self.contexts.context(step.id, host, journal)
            reads += [read for op in step.ops[host] for read in op.source_probes(ctx)]
            reads += self.prober.lookahead.sources(step, host, journal)
        self.prober.read_sources(reads, generation)

    def probe_before_turn(self, step: Step, host: str, journal: Journal) -> None:
        """Probe `host` for `step`, its later steps taken along, before the step's turn,
        kept for that turn while no command runs anywhere meanwhile (a no-op); a failure is
        left for the turn, which probes again and says what is wrong."""
        ctx = self.contexts.context(step.id, host, journal)
        generation = self.prober.lookahead.generation
        try:
            probes = self.prober.probe_step(step, host, ctx, journal)
        except (HadeployError, *OP_ERRORS):
            return
        self.prober.lookahead.keep(host, generation, step.id, probes)

    def _done_ahead(self, step: Step, host: str, journal: Journal) -> bool:
        """Whether valid look-ahead probes already show `step` done on `host`."""
        ctx = self.contexts.context(step.id, host, journal)
        try:
            probes = self.prober.ahead(step, host, ctx)
            if probes is None:
                return False
            return all(op.done(ctx, op.read(ctx, probe))
                       for op, probe in zip(step.ops[host], probes, strict=True))
        except (HadeployError, *OP_ERRORS):
            return False  # the step's turn probes again and says what is wrong

    def host_step(self, step: Step, host: str, journal: Journal) -> HostOutcome:
        """Bring `host` to what `step` wants, journaling every change before it is made and
        every failure; the host's progress (running, ok, changed) is written with the next
        save: at the end of a step that changed something (`Engine`), else of the run. A
        progress state lost in a crash costs a resume one probe, never a change it does not
        know of."""
        entry = journal.step(step.id).hosts[host]
        entry.state, entry.started, entry.error = "running", now(), None
        self.emit("host-started", step.id, host)
        ctx = self.contexts.context(step.id, host, journal)
        try:
            applied = self._converge(step, host, ctx, entry, journal)
        except Interrupted as exc:
            entry.state, entry.error = "pending", "interrupted by the operator"
            self.writer.save(journal)
            return HostOutcome(host, "interrupted", exc)
        except HadeployError as exc:
            self._fail(step, host, ctx, entry, journal, exc)
            return HostOutcome(host, "failed", exc)
        # Changes kept from an interrupted attempt count even when the re-probe found the
        # host already done.
        state: OutcomeState = "changed" if applied or live_changes(entry) else "ok"
        entry.state, entry.finished = state, now()
        self.emit(f"host-{state}", step.id, host,
                  duration=round(entry.finished - (entry.started or entry.finished), 3))
        return HostOutcome(host, state)

    def _converge(self, step: Step, host: str, ctx: HostContext, entry: HostEntry,
                  journal: Journal) -> bool:
        """Probe, apply what is not done, re-probe and verify; whether anything was applied."""
        ops = step.ops[host]
        seen = read_all(host, ops, ctx, self.prober.probe_step(step, host, ctx, journal))
        pending: list[tuple[AnyOp, Any]] = []
        for op, state in zip(ops, seen, strict=True):
            with op_errors(host, op):
                if not op.done(ctx, state):
                    pending.append((op, state))
        self._apply_all(step.id, host, pending, ctx, entry, journal)
        if not pending:
            return False
        applied = [op for op, _ in pending]
        again = read_all(host, applied, ctx, self.prober.probe(host, applied, ctx))
        bad = []
        for op, state in zip(applied, again, strict=True):
            with op_errors(host, op):
                if not op.verify(ctx, state):
                    bad.append(op.title())
        if bad:
            raise HadeployError(f"not in the desired state after applying: {', '.join(bad)}",
                                host=host)
        return True

    def _apply_all(self, step_id: str, host: str, pending: list[tuple[AnyOp, Any]],
                   ctx: HostContext, entry: HostEntry, journal: Journal) -> None:
        """Apply `pending` in order; a `background` operation's intent is journaled in its
        turn, its commands run while the next operations apply, and every one of them has
        ended before this returns or raises (the first failure, in the operations' order,
        once all have ended): a failed step's undo never races a command still running."""
        if not any(op.background for op, _ in pending):
            for op, state in pending:
                self._apply(step_id, host, op, state, ctx, entry, journal)
            return
        behind: list[Future[None]] = []
        failure: Exception | None = None
        with ThreadPoolExecutor(len(pending)) as pool:
            try:
                for op, state in pending:
                    run = self._apply(step_id, host, op, state, ctx, entry, journal,
                                      later=op.background)
                    if op.background:
                        behind.append(pool.submit(run))
            except Exception as exc:  # raised below, after the operations before it
                failure = exc
            wait(behind)
        for done in behind:  # each came before a failure of the loop
            done.result()
        if failure is not None:
            raise failure

    def _apply(self, step_id: str, host: str, op: AnyOp, seen: Any, ctx: HostContext,
               entry: HostEntry, journal: Journal, later: bool = False) -> Callable[[], None]:
        """Journal `op`'s intent, run its commands, then journal what they reported;
        `later`: journal the intent only, and return what runs the commands."""
        # An earlier, interrupted attempt's record describes the state before the run, which
        # is what rollback must restore: keep it rather than journal the half-done state.
        change = next((c for c in entry.changes
                       if c["op"] == op.op_id and not c.get("rolled_back")), None)
        if self.stop.is_set():  # before journaling an intent that nothing will carry out
            raise stopped()
        with op_errors(host, op):
            if change is None:
                change = {"op": op.op_id, "title": op.title(), "record": op.intent(ctx, seen)}
                if change["record"]:
                    entry.changes.append(change)
                    self.writer.save(journal)
            commands = op.apply(ctx, seen)
        # A change the host must be able to undo carries the host's record of the run
        # (hoststate); a read-only requirement's refusal leaves the host as it was. Commands
        # run beside others carry none: the record is written first, alone.
        recorded = journal if change.get("record") else None
        if later and recorded is not None:
            self.runner.keep_record(host, recorded)
            recorded = None

        def run() -> None:
            outputs: list[str] = []
            try:
                self.runner.run_all(host, commands, step_id, outputs, journal=recorded)
            except CommandFailed as exc:
                # What a command that failed half-way reported it had done (endpoints moved,
                # packages added) is what the undo of this failure must know.
                self._record_outcome(host, op, ctx, [*outputs, exc.result.stdout], change,
                                     entry, journal)
                raise
            self._record_outcome(host, op, ctx, outputs, change, entry, journal)

        if not later:
            run()
        return run

    def _record_outcome(self, host: str, op: AnyOp, ctx: HostContext, outputs: list[str],
                        change: dict[str, Any], entry: HostEntry, journal: Journal) -> None:
        """Add to `change`'s record what `op`'s commands reported in `outputs`, and save."""
        with op_errors(host, op):
            extra = op.outcome(ctx, outputs)
        if not extra:
            return
        record = change["record"]
        for key, value in extra.items():
            old = record.get(key)
            if isinstance(old, list) and isinstance(value, list):
                # e.g. packages installed by the interrupted attempt and by this one
                value = old + [v for v in value if v not in old]
            record[key] = value
        if not any(c is change for c in entry.changes):
            entry.changes.append(change)
        self.writer.save(journal)

    def _fail(self, step: Step, host: str, ctx: HostContext, entry: HostEntry,
              journal: Journal, exc: HadeployError) -> None:
        """Record `host`'s failure and undo what this step changed there.

        Every change this step recorded on this host, including the one whose command
        failed half-way and those of an earlier, interrupted attempt. Not after a transport
        error: the host is unreachable, and the records let resume or rollback finish later.
        """
        entry.error = str(exc)
        if live_changes(entry) and not isinstance(exc, TransportError):
            try:
                self.undoer.undo_changes(host, ctx, entry.changes, step.id, journal,
                                         interruptible=False)
            except HadeployError as undo_exc:
                entry.error += (f"\nrolling back this step's changes failed too: {undo_exc}; "
                                "they stay in the journal for `rollback`")
        entry.state, entry.finished = "failed", now()
        self.writer.save(journal)
        self.emit("host-failed", step.id, host, **failure_fields(exc, host))
