"""The engine: the one loop that executes runbooks, journals every transition, resumes, and
rolls back newest-first. It never imports rich or invoke: it reports through events.

Per step, per host (hosts in parallel unless the step is serial):
  1. one round trip runs every operation's probe (batched), plus one per probe an operation
     needs on another host (a tree copy compares the destination with its source);
  2. operations already done are `ok`; the others are journaled (intent first, so an
     interrupted command can still be undone) and applied, command by command;
  3. one more round trip re-probes and verifies; then the host is `changed`.
A failure rolls back that step's changes on that host (when it is reachable) and stops the
run after the step; the journal is left resumable.

Over SSH (a transport with `probe_ahead`), step 1 also runs the probes of the host's later
steps; they stand in for those steps' own probes as long as no command has run anywhere
since, so a no-op re-run costs one probe round trip per host. Journal writes from parallel
hosts are group-committed (see `_save`).
"""

from __future__ import annotations

import secrets as pysecrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from hadeploy import framing
from hadeploy.errors import (
    CommandFailed,
    HadeployError,
    Interrupted,
    JournalError,
    StepFailed,
    TransportError,
)
from hadeploy.events import Event, Listener
from hadeploy.inventory.model import Node
from hadeploy.journal import DONE_STATES, HostEntry, Journal, live_changes, now
from hadeploy.ops.base import UNDO, Command, HostContext, Operation, Probe
from hadeploy.platforms import DETECT_PROBE, Profile, parse_detect, profile_for
from hadeploy.redact import Redactor
from hadeploy.steps import Runbook, Step
from hadeploy.transport.base import Result, Transport

# What an operation's pure methods raise when the host is not as they expect (FileEdit of a
# missing file, undecodable content): a failure of that host, not a crash of the run.
OP_ERRORS = (FileNotFoundError, UnicodeDecodeError, ValueError)
# Lines of a failed command's stderr that `host-failed` carries.
STDERR_TAIL = 20


@contextmanager
def _op_errors(host: str, op: Operation) -> Iterator[None]:
    try:
        yield
    except OP_ERRORS as exc:
        raise HadeployError(f"{host}: {op.title()}: {exc}") from exc


@dataclass
class PlanItem:
    """What a plan shows for one host in one step."""

    step: Step
    host: str
    pending: list[tuple[Operation, list[Command], str]] = field(default_factory=list)
    done: list[Operation] = field(default_factory=list)
    error: str | None = None


def batch_probe(ops: tuple[Operation, ...], ctx: HostContext, token: str) -> str:
    """One script running every probe, each framed by markers carrying its index and rc."""
    return batch_scripts([op.probe(ctx) for op in ops], token)


def batch_scripts(probes: list[str], token: str) -> str:
    """`batch_probe` of ready-made probe scripts (each op may have its own context)."""
    return framing.batch_script(probes, token)


def split_probe(stdout: str, count: int, token: str) -> list[Probe]:
    """Split `batch_probe` output back into one `Probe` per operation."""
    return [Probe(body, code) for body, code in framing.split_batch(stdout, count, token)]


def _failure_fields(exc: BaseException) -> dict[str, Any]:
    """A failed command's fields for `host-failed` (the console shows them): the command as
    shown, its exit code and the last lines of its stderr. Nothing for other failures."""
    if not isinstance(exc, CommandFailed):
        return {}
    return {"command": exc.command, "exited": exc.exited,
            "stderr": "\n".join(exc.stderr.strip().splitlines()[-STDERR_TAIL:])}


class Engine:
    """Runs runbooks over a transport with a journal; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        nodes: Mapping[str, Node],
        platform: str,
        listener: Listener,
        redactor: Redactor | None = None,
        secrets: Mapping[str, str] | None = None,
        stop: threading.Event | None = None,
        max_parallel: int = 32,
    ) -> None:
        self.transport = transport
        self.nodes = dict(nodes)
        self.platform = platform
        self.listener = listener
        self.redact = redactor or Redactor()
        self.secrets = dict(secrets or {})
        # Secrets handed to operations must never be printed, whoever built the redactor.
        self.redact.add(*self.secrets.values())
        self.stop = stop or threading.Event()
        self.max_parallel = max_parallel
        self.profiles: dict[str, Profile] = {}
        self.facts: dict[str, dict[str, str]] = {}
        self._save_lock = threading.Lock()
        self._save_cond = threading.Condition()
        self._saves: dict[int, tuple[int, int, bool]] = {}  # journal: asked, written, busy
        self._deferred: dict[str, list[Command]] | None = None
        self.run_id = ""
        self._token = pysecrets.token_hex(6)
        # Look-ahead probes (see _probe_step): host -> step id -> probes, valid while no
        # command has run anywhere since they were taken (`_generation` unchanged).
        self._steps: tuple[Step, ...] = ()
        self._ahead: dict[str, tuple[int, dict[str, list[Probe]]]] = {}
        self._ahead_lock = threading.Lock()
        self._generation = 0
        self._run_generation = 0

    # -- plumbing --------------------------------------------------------------------------

    def emit(self, event: str, step: str | None = None, host: str | None = None,
             **data: Any) -> None:
        """Send an event to the listener, with secrets masked in every string."""
        clean = {k: self.redact(v) if isinstance(v, str) else v for k, v in data.items()}
        self.listener(Event(event, self.run_id, step, host, clean))

    def _parallel(self, hosts: list[str], work: Callable[[str], None]) -> None:
        if len(hosts) <= 1:
            for host in hosts:
                work(host)
            return
        with ThreadPoolExecutor(max_workers=min(self.max_parallel, len(hosts))) as pool:
            for future in [pool.submit(work, h) for h in hosts]:
                future.result()

    def _run(self, host: str, command: Command, step: str | None,
             interruptible: bool = True) -> Result:
        if interruptible and self.stop.is_set():
            raise Interrupted("stopped at the operator's request")
        stdin = command.stdin
        if command.stdin_from is not None:
            source = command.stdin_from
            stdin = self.transport.read(source.host, source.script)
        started = time.monotonic()
        with self._ahead_lock:  # any command may change what a probe taken earlier saw
            self._generation += 1
        result = self.transport.run(host, command.script, stdin=stdin)
        self.emit("command", step, host, command=command.shown(), exited=result.exited,
                  duration=round(time.monotonic() - started, 3))
        return result.check(self.redact(command.shown()))

    @contextmanager
    def _closing(self, journal: Journal, stats: bool = False) -> Iterator[None]:
        """Leave `journal` done, interrupted or failed, however the block ends, and say so."""
        try:
            yield
        except (Interrupted, KeyboardInterrupt):
            journal.status = "interrupted"
            self._save(journal)
            self.emit("run-failed", status="interrupted")
            raise
        except BaseException as exc:
            # Not only HadeployError: a bug must not leave the journal saying "running".
            journal.status = "failed"
            self._save(journal)
            self.emit("run-failed", status="failed", error=str(exc))
            raise
        journal.status = "done"
        journal.finished = now()
        self._save(journal)
        self.emit("run-finished", status="done", **(self._transport_stats() if stats else {}))

    def _transport_stats(self) -> dict[str, Any]:
        """Round trips and connections per host, when the transport counts them."""
        stats = getattr(self.transport, "stats", None)
        return dict(stats()) if callable(stats) else {}

    def _ctx(self, step_id: str, host: str, journal: Journal | None,
             detail: bool = False) -> HostContext:
        changed = journal.changed_steps(host) if journal else frozenset()
        return HostContext(node=self.nodes[host], profile=self.profiles[host],
                           run_id=journal.run_id if journal else "plan", step_id=step_id,
                           secrets=self.secrets, changed_steps=changed, detail=detail)

    def _save(self, journal: Journal | None) -> None:
        """Write `journal`; on return the file holds every change made before the call.

        Group commit: while one thread writes, the others that changed the journal wait and
        are covered by the next write, which serialises their changes too. Twelve hosts
        finishing a step at once cost a few writes (each with two fsyncs), not twelve.
        """
        if journal is None:
            return
        key = id(journal)
        with self._save_cond:
            requested, written, busy = self._saves.get(key, (0, 0, False))
            ticket = requested + 1
            self._saves[key] = (ticket, written, busy)
            while True:
                requested, written, busy = self._saves[key]
                if written >= ticket:
                    return
                if not busy:
                    break
                self._save_cond.wait()
            self._saves[key] = (requested, written, True)
            covered = requested  # this write serialises every change ticketed so far
        done = False
        try:
            with self._save_lock:
                journal.save()
            done = True
        finally:
            with self._save_cond:
                requested, written, _ = self._saves[key]
                self._saves[key] = (requested, max(written, covered) if done else written,
                                    False)
                self._save_cond.notify_all()

    # -- facts -----------------------------------------------------------------------------

    def gather_facts(self, hosts: tuple[str, ...], journal: Journal | None = None) -> None:
        """Detect platform and init system on every host in one round trip each."""
        failures: dict[str, BaseException] = {}

        def detect(host: str) -> None:
            try:
                result = self.transport.run(host, DETECT_PROBE).check("detect platform")
            except HadeployError as exc:
                failures[host] = exc
                return
            detected, init = parse_detect(result.stdout)
            self.facts[host] = {"platform": detected, "init": init}

        self._parallel(list(hosts), detect)
        if failures:
            raise StepFailed("facts", {h: HadeployError(self.redact(str(e)))
                                       for h, e in failures.items()})
        self.apply_facts(self.facts)
        if journal is not None:
            journal.facts = dict(self.facts)
            self._save(journal)
        for host in hosts:
            self.emit("facts", None, host, **self.facts[host])

    def apply_facts(self, facts: Mapping[str, Mapping[str, str]]) -> None:
        """Build each host's profile from facts (or from the inventory alone when offline)."""
        for host, values in facts.items():
            self.facts[host] = dict(values)
            platform = self.platform if self.platform != "auto" else values.get("platform", "")
            init = values.get("init")
            self.profiles[host] = profile_for(platform or "debian",
                                              "systemd" if init == "systemd" else
                                              "sysv" if init == "sysv" else None)

    def assume_profiles(self, hosts: tuple[str, ...]) -> None:
        """Profiles from the inventory only (offline plans)."""
        platform = self.platform if self.platform != "auto" else "debian"
        for host in hosts:
            self.profiles.setdefault(host, profile_for(platform))

    # -- probing ---------------------------------------------------------------------------

    def probe(self, host: str, ops: tuple[Operation, ...], ctx: HostContext) -> list[Probe]:
        """Run every operation's probe on `host` in one round trip."""
        if not ops:
            return []
        script = batch_probe(ops, ctx, self._token)
        result = self.transport.run(host, script)
        if not result.ok and not framing.is_batch_output(result.stdout, self._token):
            raise CommandFailed(host, "probe (read-only checks)", result.exited, result.stderr)
        seen = split_probe(result.stdout, len(ops), self._token)
        return [self._with_sources(host, op, ctx, probe) for op, probe in zip(ops, seen,
                                                                           strict=True)]

    def _with_sources(self, host: str, op: Operation, ctx: HostContext, probe: Probe) -> Probe:
        """`probe` plus the output of the operation's read-only probes on other hosts."""
        reads = op.source_probes(ctx)
        if not reads:
            return probe
        outputs = []
        for read in reads:
            if read.host not in self.nodes:
                raise HadeployError(f"{host}: {op.title()}: source host {read.host!r} is not "
                                    "in the inventory")
            result = self.transport.run(read.host, read.script)
            if not result.ok:
                raise CommandFailed(read.host, f"probe of the source of {op.title()} (for "
                                    f"{host})", result.exited, result.stderr)
            outputs.append(result.stdout)
        return replace(probe, sources=tuple(outputs))

    # -- look-ahead --------------------------------------------------------------------------

    def _probe_step(self, step: Step, host: str, ctx: HostContext,
                    journal: Journal) -> list[Probe]:
        """The probes of `step` on `host`, taking the probes of its later steps along.

        A round trip costs far more than a few more read-only probes, so when the transport
        says so (`probe_ahead`), the probe of a step also runs the probes of the host's
        later steps. A later step uses them instead of its own round trip only if no command
        has run on any host since (a no-op re-run: one probe round trip per host in all);
        otherwise it probes again. Once a command has run, nobody probes ahead any more, so
        a run executes each probe at most twice. Steps whose probes also read other hosts
        are left out.
        """
        ops = step.ops[host]
        cached = self._cached(step, host)
        if cached is not None:
            return cached
        ahead = self._ahead_items(step, host, journal)
        if not ahead:
            return self.probe(host, ops, ctx)
        with self._ahead_lock:
            generation = self._generation
        scripts = [op.probe(ctx) for op in ops] + [op.probe(c) for _, op, c in ahead]
        result = self.transport.run(host, batch_scripts(scripts, self._token))
        if not result.ok and not framing.is_batch_output(result.stdout, self._token):
            raise CommandFailed(host, "probe (read-only checks)", result.exited, result.stderr)
        seen = split_probe(result.stdout, len(scripts), self._token)
        later: dict[str, list[Probe]] = {}
        for (step_id, _, _), probe in zip(ahead, seen[len(ops):], strict=True):
            later.setdefault(step_id, []).append(probe)
        with self._ahead_lock:
            self._ahead[host] = (generation, later)
        return [self._with_sources(host, op, ctx, probe)
                for op, probe in zip(ops, seen[:len(ops)], strict=True)]

    def _ahead_items(self, step: Step, host: str,
                     journal: Journal) -> list[tuple[str, Operation, HostContext]]:
        """(step id, operation, context) of every probe to take along with `step`'s."""
        index = next((i for i, s in enumerate(self._steps) if s is step), None)
        if not getattr(self.transport, "probe_ahead", False) or index is None:
            return []
        with self._ahead_lock:
            if self._generation != self._run_generation:
                # Something changed in this run: later steps will likely change too, and
                # probing ahead again at every step would run each probe over and over.
                return []
        items: list[tuple[str, Operation, HostContext]] = []
        size = 0
        for later in self._steps[index + 1:]:
            entry = journal.step(later.id).hosts.get(host)
            if host not in later.ops or entry is None or entry.state in DONE_STATES:
                continue
            ctx = self._ctx(later.id, host, journal)
            ops = later.ops[host]
            if any(op.source_probes(ctx) or op.probe_waits() for op in ops):
                continue
            scripts = [op.probe(ctx) for op in ops]
            size += sum(len(script) for script in scripts)
            if size > 32_000:  # stay far below the kernel's limit for one argument
                break
            items += [(later.id, op, ctx) for op in ops]
        return items

    def _cached(self, step: Step, host: str, keep: bool = False) -> list[Probe] | None:
        """Look-ahead probes of `step` on `host`, if still valid (taken out unless `keep`)."""
        with self._ahead_lock:
            generation, later = self._ahead.get(host, (-1, {}))
            if generation != self._generation or step.id not in later:
                return None
            return later[step.id] if keep else later.pop(step.id)

    def _done_ahead(self, step: Step, host: str, journal: Journal) -> bool:
        """Whether valid look-ahead probes already show `step` done on `host`."""
        seen = self._cached(step, host, keep=True)
        if seen is None:
            return False
        ctx = self._ctx(step.id, host, journal)
        try:
            return all(op.done(ctx, probe)
                       for op, probe in zip(step.ops[host], seen, strict=True))
        except OP_ERRORS:
            return False

    # -- plan ------------------------------------------------------------------------------

    def plan(self, runbook: Runbook, offline: bool = False) -> list[PlanItem]:
        """What a run would do, from read-only probes (or none when offline); changes nothing."""
        items: list[PlanItem] = []
        lock = threading.Lock()
        # Steps that would change a host count as changed for later steps (restart_after).
        would_change: dict[str, set[str]] = {h: set() for h in runbook.hosts}
        for step in runbook.steps:
            step_items: dict[str, PlanItem] = {}

            def plan_host(host: str, step: Step = step,
                          step_items: dict[str, PlanItem] = step_items) -> None:
                item = PlanItem(step, host)
                ops = step.ops[host]
                ctx = replace(self._ctx(step.id, host, None, detail=True),
                              changed_steps=frozenset(would_change[host]))
                try:
                    seen = (self.probe(host, ops, ctx) if not offline
                            else [Probe("") for _ in ops])
                    for op, probe in zip(ops, seen, strict=True):
                        try:
                            if not offline and op.done(ctx, probe):
                                item.done.append(op)
                                continue
                            commands = op.apply(ctx, probe)
                            preview = op.preview(ctx, probe)
                        except OP_ERRORS as exc:
                            commands, preview = [], f"  (decided on the host at run time: {exc})\n"
                        item.pending.append((op, commands, self.redact(preview)))
                except HadeployError as exc:
                    item.error = self.redact(str(exc))
                with lock:
                    step_items[host] = item
                    if item.pending:
                        would_change[host].add(step.id)

            if offline:  # nothing to wait for: threads would only add start-up cost
                for host in step.hosts:
                    plan_host(host)
            else:
                self._parallel(list(step.hosts), plan_host)
            items += [step_items[h] for h in step.hosts]
        return items

    # -- run -------------------------------------------------------------------------------

    def run(self, runbook: Runbook, journal: Journal) -> None:
        """Execute `runbook`, resuming from `journal`'s progress; raise on the first failure."""
        self.run_id = journal.run_id
        self._steps = runbook.steps
        self._run_generation = self._generation
        # Every step is on disk from the start (pending), so the journal shows what remains.
        for step in runbook.steps:
            journal.ensure_step(step.id, self.redact(step.title), list(step.hosts))
        journal.status = "running"
        self._save(journal)
        self.emit("run-started", phase=runbook.phase, kind=journal.kind)
        with self._closing(journal, stats=True):
            for step in runbook.steps:
                self._run_step(step, journal)

    def _run_step(self, step: Step, journal: Journal) -> None:
        entry = journal.ensure_step(step.id, self.redact(step.title), list(step.hosts))
        todo = [h for h in step.hosts if entry.hosts[h].state not in DONE_STATES]
        if not todo:
            self.emit("step-skipped", step.id, title=step.title, reason="done in this run")
            return
        self.emit("step-started", step.id, title=step.title, hosts=todo)
        failures: dict[str, BaseException] = {}
        interrupted: list[Interrupted] = []

        def work(host: str, first_probe: list[Probe] | None = None) -> None:
            try:
                self._host_step(step, host, journal, first_probe)
            except Interrupted as exc:
                interrupted.append(exc)
            except HadeployError as exc:
                failures[host] = exc

        # A serial step that look-ahead probes show done everywhere restarts nothing: its
        # order does not matter, and finding the VIP holder would cost a round trip.
        order = None
        if step.serial and not all(self._done_ahead(step, h, journal) for h in todo):
            order = self._serial_order(step, todo)
        if order is None:
            self._parallel(todo, work)
        elif not order[1]:  # nobody to keep serving: the first host alone, then the rest
            work(order[0][0])
            if not failures and not interrupted:
                self._parallel(order[0][1:], work)
        else:
            for host in order[0]:
                work(host)
                if failures or interrupted:
                    break
        if interrupted:
            raise interrupted[0]
        self.emit("step-finished", step.id, failed=sorted(failures))
        if failures:
            raise StepFailed(step.id, {h: HadeployError(self.redact(str(e)))
                                       for h, e in failures.items()})
        if self.stop.is_set():
            raise Interrupted("stopped at the operator's request")

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
        last: set[str] = set()

        def look(host: str) -> None:
            result = self.transport.run(host, step.last_probe or "true")
            if result.stdout.strip() == "last":
                last.add(host)

        self._parallel(hosts, look)
        return [h for h in hosts if h not in last] + [h for h in hosts if h in last], bool(last)

    def _host_step(self, step: Step, host: str, journal: Journal,
                   first_probe: list[Probe] | None) -> None:
        entry: HostEntry = journal.step(step.id).hosts[host]
        entry.state, entry.started, entry.error = "running", now(), None
        self._save(journal)
        self.emit("host-started", step.id, host)
        ctx = self._ctx(step.id, host, journal)
        ops = step.ops[host]
        pending: list[tuple[Operation, Probe]] = []
        try:
            seen = first_probe or self._probe_step(step, host, ctx, journal)
            for op, probe in zip(ops, seen, strict=True):
                with _op_errors(host, op):
                    if not op.done(ctx, probe):
                        pending.append((op, probe))
            for op, probe in pending:
                self._apply_op(step, host, op, probe, ctx, entry, journal)
            if pending:
                verify_ops = tuple(op for op, _ in pending)
                again = self.probe(host, verify_ops, ctx)
                bad = []
                for op, probe in zip(verify_ops, again, strict=True):
                    with _op_errors(host, op):
                        if not op.verify(ctx, probe):
                            bad.append(op.title())
                if bad:
                    raise HadeployError(f"{host}: not in the desired state after applying: "
                                        f"{', '.join(bad)}")
        except Interrupted:
            entry.state, entry.error = "pending", "interrupted by the operator"
            self._save(journal)
            raise
        except HadeployError as exc:
            entry.error = self.redact(str(exc))
            # Every change this step recorded on this host, including the one whose command
            # failed half-way and those of an earlier, interrupted attempt. Not after a
            # transport error: the host is unreachable, and the records let resume or
            # rollback finish the job later.
            if live_changes(entry) and not isinstance(exc, TransportError):
                try:
                    self._undo_changes(host, ctx, entry.changes, step.id, journal,
                                       interruptible=False)
                except HadeployError as undo_exc:
                    entry.error += self.redact(
                        f"\nrolling back this step's changes failed too: {undo_exc}; "
                        "they stay in the journal for `rollback`")
            entry.state, entry.finished = "failed", now()
            self._save(journal)
            self.emit("host-failed", step.id, host, error=str(exc), **_failure_fields(exc))
            raise
        # Changes kept from an interrupted attempt count even when the re-probe found the
        # host already done.
        changed = bool(pending or live_changes(entry))
        entry.state, entry.finished = ("changed" if changed else "ok"), now()
        self._save(journal)
        self.emit(f"host-{entry.state}", step.id, host,
                  duration=round(entry.finished - (entry.started or entry.finished), 3))

    def _apply_op(self, step: Step, host: str, op: Operation, probe: Probe,
                  ctx: HostContext, entry: HostEntry, journal: Journal) -> dict[str, Any]:
        # An earlier, interrupted attempt's record describes the state before the run, which
        # is what rollback must restore: keep it rather than journal the half-done state.
        change = next((c for c in entry.changes
                       if c["op"] == op.op_id and not c.get("rolled_back")), None)
        if self.stop.is_set():  # before journaling an intent that nothing will carry out
            raise Interrupted("stopped at the operator's request")
        with _op_errors(host, op):
            if change is None:
                change = {"op": op.op_id, "title": self.redact(op.title()),
                          "record": op.intent(ctx, probe)}
                if change["record"]:
                    entry.changes.append(change)
                    self._save(journal)
            commands = op.apply(ctx, probe)
        outputs = [self._run(host, command, step.id).stdout for command in commands]
        with _op_errors(host, op):
            extra = op.outcome(ctx, outputs)
        if extra:
            record = change["record"]
            for key, value in extra.items():
                old = record.get(key)
                if isinstance(old, list) and isinstance(value, list):
                    # e.g. packages installed by the interrupted attempt and by this one
                    value = old + [v for v in value if v not in old]
                record[key] = value
            if not any(c is change for c in entry.changes):
                entry.changes.append(change)
            self._save(journal)
        return change

    # -- rollback --------------------------------------------------------------------------

    def _undo_changes(self, host: str, ctx: HostContext, changes: list[dict[str, Any]],
                      step_id: str, journal: Journal | None,
                      interruptible: bool = True) -> None:
        """Undo `changes` on `host`, newest first, marking each as rolled back."""
        for change in reversed(changes):
            if change.get("rolled_back") or not change.get("record"):
                continue
            kind = change["record"].get("kind")
            undo = UNDO.get(kind) if isinstance(kind, str) else None
            if undo is None:
                raise JournalError(
                    f"{host}: step {step_id} recorded a change of unknown kind {kind!r} "
                    f"({change.get('title')}); this version of hadeploy cannot undo it")
            for command in undo(ctx, change["record"]):
                if command.deferred and self._deferred is not None:
                    with self._save_lock:
                        queue = self._deferred.setdefault(host, [])
                        if command not in queue:
                            queue.append(command)
                    continue
                self._run(host, command, step_id, interruptible)
            change["rolled_back"] = True
            self._save(journal)

    def rollback(self, journals: list[Journal], rollback_journal: Journal) -> None:
        """Undo every change recorded in `journals` (newest run, newest step first)."""
        self.run_id = rollback_journal.run_id
        self.emit("run-started", phase=rollback_journal.phase, kind="rollback")
        rollback_journal.status = "running"
        self._save(rollback_journal)
        with self._closing(rollback_journal):
            for journal in sorted(journals, key=lambda j: j.run_id, reverse=True):
                self.apply_facts({h: f for h, f in journal.facts.items() if h in self.nodes})
                self._deferred = {}
                for step in reversed(journal.steps):
                    self._rollback_step(journal, step.id, rollback_journal)
                self._run_deferred(journal.run_id)
                # A second rollback finds nothing to undo; the first one keeps the credit.
                if journal.rolled_back_by is None:
                    journal.rolled_back_by = rollback_journal.run_id
                self._save(journal)

    def _run_deferred(self, run_id: str) -> None:
        """Commands an undo asked to run last (restarts after restored files), per host."""
        deferred, self._deferred = self._deferred or {}, None
        step_id = f"{run_id}/deferred"

        def run_all(host: str) -> None:
            for command in deferred[host]:
                self._run(host, command, step_id)

        self._parallel(sorted(deferred), run_all)

    def _rollback_step(self, journal: Journal, step_id: str, log: Journal) -> None:
        step = journal.step(step_id)
        hosts = [h for h, e in step.hosts.items() if live_changes(e)]
        if not hosts:
            return
        entry = log.ensure_step(f"{journal.run_id}/{step_id}", f"undo {step.title}", hosts)
        self._save(log)
        self.emit("step-started", entry.id, title=entry.title, hosts=hosts)
        failures: dict[str, BaseException] = {}
        interrupted: list[Interrupted] = []

        def undo(host: str) -> None:
            host_entry = entry.hosts[host]
            host_entry.state, host_entry.started, host_entry.error = "running", now(), None
            self._save(log)
            ctx = replace(self._ctx(step_id, host, None), run_id=journal.run_id)
            try:
                self._undo_changes(host, ctx, step.hosts[host].changes, step_id, journal)
            except Interrupted as exc:
                host_entry.state, host_entry.error = "pending", "interrupted by the operator"
                interrupted.append(exc)
                return
            except HadeployError as exc:
                host_entry.state, host_entry.error = "failed", self.redact(str(exc))
                failures[host] = exc
                self.emit("host-failed", entry.id, host, error=str(exc), **_failure_fields(exc))
                return
            step.hosts[host].state = "rolled-back"
            host_entry.state, host_entry.finished = "changed", now()
            self._save(journal)
            self._save(log)
            self.emit("host-rolled-back", entry.id, host)

        self._parallel(hosts, undo)
        self._save(log)
        if interrupted:
            raise interrupted[0]
        if failures:
            raise StepFailed(entry.id, {h: HadeployError(self.redact(str(e)))
                                        for h, e in failures.items()})
