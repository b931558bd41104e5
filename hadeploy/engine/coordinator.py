"""`Engine`: the coordinator of a run, a plan or a rollback (see `hadeploy.engine`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager

from hadeploy.engine.commands import CommandRunner, stopped
from hadeploy.engine.contexts import HostContexts
from hadeploy.engine.executor import StepExecutor
from hadeploy.engine.failures import first_interruption
from hadeploy.engine.group import in_background, on_hosts
from hadeploy.engine.hoststate import HostState, Owner, claim_script, facts_script, split_detect
from hadeploy.engine.lookahead import LookAhead
from hadeploy.engine.planner import PlanItem, Planner
from hadeploy.engine.probing import Prober
from hadeploy.engine.rollback import Undoer
from hadeploy.errors import HadeployError, Interrupted, StepFailed
from hadeploy.events import Emitter, Listener
from hadeploy.inventory.model import Node
from hadeploy.journal import DONE_STATES, Journal, JournalWriter, now
from hadeploy.ops.base import AnyOp, HostContext, Probe
from hadeploy.outcome import HostOutcome
from hadeploy.platforms import Profile, parse_detect
from hadeploy.redact import Redactor
from hadeploy.steps import Runbook, Step
from hadeploy.transport.base import Transport

# Each host's outcome of the detection round trip, and its claim's output.
_Detected = tuple[dict[str, HostOutcome], dict[str, str]]


class Engine:
    """Runs, plans and rolls back runbooks over a transport, journaling every change.

    It wires the parts together and decides, step by step, whether the run goes on; secrets
    it hands operations are added to `redactor`, which masks events, journals and the text
    of the errors it raises.
    """

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
        self.redact = redactor or Redactor()
        self.redact.add(*(secrets or {}).values())
        self.stop = stop or threading.Event()
        self.max_parallel = max_parallel
        self.hosts = HostContexts(nodes, platform, secrets or {})
        self.emit = Emitter(listener, self.redact)
        self.writer = JournalWriter(self.redact)
        self.lookahead = LookAhead(transport.probe_ahead, self.hosts.context)
        self.prober = Prober(transport, self.hosts.nodes, self.lookahead)
        runner = CommandRunner(transport, self.lookahead, self.emit, self.stop)
        self.runner = runner
        self.hoststate: HostState | None = None
        self._facts_ahead: tuple[tuple[str, ...], str | None, Future[_Detected]] | None = None
        self.undoer = Undoer(runner, self.writer, self.emit, self.hosts, self.redact,
                             max_parallel)
        self.executor = StepExecutor(self.prober, runner, self.undoer, self.writer,
                                     self.emit, self.hosts, self.stop, max_parallel)
        self.planner = Planner(self.prober, self.hosts, self.redact, max_parallel)

    @property
    def run_id(self) -> str:
        """The run the events belong to."""
        return self.emit.run_id

    @run_id.setter
    def run_id(self, value: str) -> None:
        self.emit.run_id = value

    @property
    def profiles(self) -> dict[str, Profile]:
        """Each host's platform profile (from facts, or assumed offline)."""
        return self.hosts.profiles

    # -- facts -----------------------------------------------------------------------------

    def hold(self, owner: Owner, break_stale: bool = False) -> HostState:
        """Make this run hold its hosts: the lock is taken in the first round trip
        (`gather_facts`, or `claim`), and every change carries the host's own record of the
        run (see `hoststate`)."""
        self.hoststate = HostState(self.transport, owner, self.redact, break_stale,
                                   self.max_parallel)
        self.runner.records = self.hoststate.prefix
        return self.hoststate

    def start_facts(self, hosts: tuple[str, ...], records_of: str | None = None) -> None:
        """Begin `gather_facts`' round trips (and, for a run holding its hosts, the lock
        claims) in the background, so that they go on while the caller loads the run's code;
        `gather_facts` with the same hosts then takes their results. A run that ends before
        `gather_facts` gives back what they took (`settle_facts`)."""
        self._facts_ahead = (hosts, records_of, in_background(
            lambda: self._detect(hosts, records_of), "facts-ahead"))

    def settle_facts(self) -> None:
        """Give back the locks that facts started ahead took, when `gather_facts` never
        took their results (the run ended before it)."""
        if self._facts_ahead is None:
            return
        _, _, ahead = self._facts_ahead
        self._facts_ahead = None
        try:
            _, claims = ahead.result()
        except HadeployError:
            return  # raised before any host answered: nothing was taken
        if self.hoststate is not None:
            self.hoststate.claim(claims, give_back=True)

    def _detect(self, hosts: tuple[str, ...], records_of: str | None) -> _Detected:
        """The detection round trip on every host: its outcome, and the claim's output."""
        script = facts_script(self.hoststate.owner if self.hoststate else None, records_of)
        claims: dict[str, str] = {}

        def detect(host: str) -> HostOutcome:
            try:
                result = self.transport.run(host, script)
                result.check("detect platform")
            except HadeployError as exc:
                return HostOutcome(host, "failed", exc)
            platform, claims[host] = split_detect(result.stdout)
            detected, init = parse_detect(platform)
            self.hosts.facts[host] = {"platform": detected, "init": init}
            return HostOutcome(host, "ok")

        return on_hosts(list(hosts), detect, self.max_parallel), claims

    def gather_facts(self, hosts: tuple[str, ...], journal: Journal | None = None,
                     records_of: str | None = None) -> None:
        """Detect platform and init system on every host in one round trip each; a run that
        holds its hosts takes their locks in the same round trip (and reads their records
        of phase `records_of`). Started ahead (`start_facts`), it waits for those."""
        ahead = self._facts_ahead
        self._facts_ahead = None
        if ahead is not None and ahead[:2] == (hosts, records_of):
            outcomes, claims = ahead[2].result()
        else:
            outcomes, claims = self._detect(hosts, records_of)
        if any(o.failed for o in outcomes.values()):
            if self.hoststate is not None:
                self.hoststate.claim({h: claims[h] for h in claims}, give_back=True)
            raise StepFailed("facts", outcomes, self.redact)
        if self.hoststate is not None:
            self.hoststate.claim(claims)
        self.apply_facts(self.hosts.facts)
        if journal is not None:
            journal.facts = dict(self.hosts.facts)
            self.writer.save(journal)
        for host in hosts:
            self.emit("facts", None, host, **self.hosts.facts[host])

    def claim(self, hosts: tuple[str, ...], records_of: str | None = None) -> None:
        """Take the run's locks (and read records of `records_of`) in a round trip of its own,
        for a run without a detection round (a rollback)."""
        if self.hoststate is None:
            return
        script = claim_script(self.hoststate.owner, records_of)
        claims: dict[str, str] = {}

        def take(host: str) -> HostOutcome:
            try:
                claims[host] = split_detect(
                    self.transport.run(host, script).check("take the run lock").stdout)[1]
            except HadeployError as exc:
                return HostOutcome(host, "failed", exc)
            return HostOutcome(host, "ok")

        outcomes = on_hosts(list(hosts), take, self.max_parallel)
        if any(o.failed for o in outcomes.values()):
            self.hoststate.claim(claims, give_back=True)
            raise StepFailed("facts", outcomes, self.redact)
        self.hoststate.claim(claims)

    def apply_facts(self, facts: Mapping[str, Mapping[str, str]]) -> None:
        """Build each host's profile from facts (or from the inventory alone when offline)."""
        self.hosts.apply_facts(facts)

    def assume_profiles(self, hosts: tuple[str, ...]) -> None:
        """Profiles from the inventory only (offline plans)."""
        self.hosts.assume_profiles(hosts)

    # -- plan, run, rollback ---------------------------------------------------------------

    def probe(self, host: str, ops: Sequence[AnyOp], ctx: HostContext) -> list[Probe]:
        """Run every operation's probe on `host` in one round trip (none if all are local)."""
        return self.prober.probe(host, ops, ctx)

    def plan(self, runbook: Runbook, offline: bool = False) -> list[PlanItem]:
        """What a run would do, from read-only probes (or none when offline); changes nothing."""
        return self.planner.plan(runbook, offline)

    def run(self, runbook: Runbook, journal: Journal) -> None:
        """Execute `runbook`, resuming from `journal`'s progress; raise on the first failure."""
        self.run_id = journal.run_id
        self.lookahead.start_run(runbook.steps)
        # Every step is on disk from the start (pending), so the journal shows what remains.
        for step in runbook.steps:
            journal.ensure_step(step.id, step.title, list(step.hosts))
        journal.status = "running"
        self.writer.save(journal)
        self.emit("run-started", phase=runbook.phase, kind=journal.kind,
                  steps=len(runbook.steps))
        with self._closing(journal, stats=True):
            early, probed = self._probe_the_others_early(runbook, journal)
            try:
                for step in runbook.steps:
                    if probed & set(step.hosts):
                        early.result()  # their probes are about to be used
                    self._run_step(step, journal)
            finally:
                early.result()

    def _probe_the_others_early(self, runbook: Runbook,
                                journal: Journal) -> tuple[Future[None], set[str]]:
        """Probe the hosts the first step does not involve, each for its own first step, in
        the background while that step runs (when the transport probes ahead); return the
        work and the hosts it probes. The original controller's probe of a whole-plane
        scale-out, the longest of all (the endpoint listing, every API), no longer waits
        for the new controllers' to end before it starts."""
        firsts: dict[str, Step] = {}
        for step in runbook.steps:
            entry = journal.step(step.id)
            for host in step.hosts:
                if host not in firsts and entry.hosts[host].state not in DONE_STATES:
                    firsts[host] = step
        started = min((runbook.steps.index(step) for step in firsts.values()), default=0)
        early = {host: step for host, step in firsts.items()
                 if runbook.steps.index(step) != started}
        if not early or not self.lookahead.enabled:
            done: Future[None] = Future()
            done.set_result(None)
            return done, set()
        first = runbook.steps[started]
        in_first = [h for h in first.hosts if firsts.get(h) is first]

        def probe() -> None:
            self.executor.read_sources_first(first, in_first, journal)
            on_hosts(list(early), lambda host: self.executor.probe_before_turn(
                early[host], host, journal), self.max_parallel)

        return in_background(probe, "early-probes"), set(early)

    def _run_step(self, step: Step, journal: Journal) -> None:
        entry = journal.ensure_step(step.id, step.title, list(step.hosts))
        todo = [h for h in step.hosts if entry.hosts[h].state not in DONE_STATES]
        if not todo:
            self.emit("step-skipped", step.id, title=step.title, reason="done in this run")
            return
        self.emit("step-started", step.id, title=step.title, hosts=todo)
        outcomes = self.executor.run_hosts(step, todo, journal)
        # The hosts' progress, in one write where the step changed something (changes and
        # failures were written as they happened); a step that changed nothing is not worth
        # a write (two fsyncs): its progress goes with the next one, and a resume after a
        # crash meanwhile probes it again and finds it done.
        if any(o.state != "ok" for o in outcomes.values()):
            self.writer.save(journal)
        interrupted = first_interruption(outcomes)
        if interrupted is not None:
            raise interrupted
        failed = sorted(h for h, o in outcomes.items() if o.failed)
        self.emit("step-finished", step.id, failed=failed)
        if failed:
            raise StepFailed(step.id, outcomes, self.redact)
        if self.stop.is_set():
            raise stopped()

    def rollback(self, journals: list[Journal], rollback_journal: Journal) -> None:
        """Undo every change recorded in `journals` (newest run, newest step first)."""
        self.run_id = rollback_journal.run_id
        self.emit("run-started", phase=rollback_journal.phase, kind="rollback")
        rollback_journal.status = "running"
        self.writer.save(rollback_journal)
        with self._closing(rollback_journal):
            self.undoer.rollback(journals, rollback_journal)

    @contextmanager
    def _closing(self, journal: Journal, stats: bool = False) -> Iterator[None]:
        """Leave `journal` done, interrupted or failed, however the block ends, and say so."""
        try:
            yield
        except (Interrupted, KeyboardInterrupt):
            journal.status = "interrupted"
            self.writer.save(journal)
            self.emit("run-failed", status="interrupted")
            raise
        except BaseException as exc:
            # Not only HadeployError: a bug must not leave the journal saying "running".
            journal.status = "failed"
            self.writer.save(journal)
            self.emit("run-failed", status="failed", error=str(exc))
            raise
        journal.status = "done"
        journal.finished = now()
        # The hosts' locks go back (with their last records, saying done) before the journal
        # says done: a run killed in between is resumable, not finished with locks left.
        if self.hoststate is not None:
            self.hoststate.release()
        self.writer.save(journal)
        self.emit("run-finished", status="done", **(self.transport.stats() if stats else {}))
