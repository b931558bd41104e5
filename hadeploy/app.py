"""Use cases: plan a phase, deploy it, roll it back, verify the result, render a file.

The public API behind the tasks (hadeploy/tasks.py) and the lab's demo. Order of a run, so
that bad input never reaches a host: load and validate the inventory, read the secrets from
the environment, take the lock, check the journal, check the local files the inventory
names (SSH key, known_hosts, ssh_config), and only then connect.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hadeploy.errors import HadeployError, InventoryError, JournalError
from hadeploy.events import Event, Listener
from hadeploy.inventory import Inventory, check_local_files, load_inventory
from hadeploy.inventory.tls import BUNDLE_SECRET, check_tls_files, private_key_lines
from hadeploy.journal import Journal, RunStore, now, state_dir_for, write_atomic
from hadeploy.redact import Redactor
from hadeploy.transport.base import Result, Transport

# What a run needs only once it has connected (engine, runbooks, catalog, renderers) or only
# for one task (verify) is imported where it is used: a run starts connecting first, and its
# hosts' handshakes go on while the rest of the code loads (see make_transport).
if TYPE_CHECKING:
    from hadeploy.catalog import Family
    from hadeploy.engine import Engine, PlanItem
    from hadeploy.engine.hoststate import HostState
    from hadeploy.platforms import Profile
    from hadeploy.steps import Runbook
    from hadeploy.verify import Report

PHASES = ("lb", "controllers", "restart")
RUNBOOK_MODULES = {"lb": "hadeploy.runbook.lb", "controllers": "hadeploy.runbook.controllers",
                   "restart": "hadeploy.runbook.drains"}
RESUMABLE = ("failed", "interrupted", "running")
RENDERABLE = ("haproxy", "keepalived", "check-script", "sysctl")
# A run id as RunStore.new_run_id makes it: anything else a host's record names is refused.
RUN_ID = re.compile(r"\d{8}-\d{6}-\d{3}-[a-z]+-[a-z]+")


def read_secrets(inv: Inventory, required: bool) -> dict[str, str]:
    """The secret values the inventory names, from the environment; missing ones are errors."""
    values: dict[str, str] = {}
    problems: list[str] = []
    for name in inv.secret_env_names():
        value = os.environ.get(name)
        if value:
            values[name] = value
        elif required and name != inv.ssh.sudo_password_env:
            problems.append(f"${name} is not set; export it before running (secrets are never "
                            "stored in the inventory)")
    for name, value in values.items():
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            problems.append(f"${name} contains control characters (a newline would inject "
                            "configuration); use printable characters only")
    auth = inv.keepalived.auth_password_env
    if auth and auth in values and len(values[auth]) > 8:
        problems.append(f"${auth}: keepalived PASS authentication uses at most 8 characters; "
                        "a longer password is silently cut. Use 8 characters or fewer")
    if required and inv.tls is not None:
        bundle, found = check_tls_files(inv)
        problems += found
        if bundle is not None:
            values[BUNDLE_SECRET] = bundle.pem.decode("ascii")
    if problems:
        raise InventoryError(inv.path, problems)
    return values


def phase_hosts(inv: Inventory, phase: str) -> tuple[str, ...]:
    """The hosts a phase works on (facts are gathered on these before the runbook is built)."""
    if phase == "lb":
        return tuple(n.name for n in inv.balancers)
    if phase == "controllers":
        names = [c.name for c in (*inv.controllers, *inv.retired)]
        names += [rc.host for rc in inv.openstack.rc_files]
        return tuple(dict.fromkeys(names))
    if phase == "restart":
        return tuple(c.name for c in inv.controllers)
    raise HadeployError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")


def check_services(inv: Inventory, only: tuple[str, ...]) -> None:
    """`--service` names must be services this inventory balances and scales out."""
    from hadeploy.catalog import load_catalog

    catalog = load_catalog()
    known = [s for s in inv.services if not catalog[s].lb_only]
    wrong = [s for s in only if s not in known]
    if wrong:
        raise InventoryError(inv.path, [
            f"--service {', '.join(wrong)}: not a scaled-out service of this inventory; "
            f"choose among {', '.join(known)} (services.balance)"])


def build_runbook(inv: Inventory, phase: str, first_deploy: bool,
                  profiles: Mapping[str, Profile], only: tuple[str, ...] = ()) -> Runbook:
    """The runbook of `phase`, for hosts whose platform profiles are known."""
    families: dict[str, Family] = {h: p.family for h, p in profiles.items()}
    if phase == "lb":
        from hadeploy.runbook.lb import build_lb_runbook

        return build_lb_runbook(inv, first_deploy=first_deploy, families=families)
    if phase == "controllers":
        from hadeploy.runbook.controllers import build_controllers_runbook

        check_services(inv, only)
        return build_controllers_runbook(inv, families, only)
    if phase == "restart":
        from hadeploy.runbook.drains import build_restart_runbook

        check_services(inv, only)
        return build_restart_runbook(inv, families, only)
    raise HadeployError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")


def load_runbook_code(phase: str) -> None:
    """Import the code that builds `phase`'s runbook (runbooks, operations, renderers), so
    that it loads while the hosts connect rather than after their facts are in."""
    importlib.import_module(RUNBOOK_MODULES[phase])


def render_file(hosts: str, what: str, node: str | None = None) -> str:
    """The text of file `what` (one of RENDERABLE) for the inventory at `hosts`, secrets
    masked; keepalived.conf of every balancer, or of `node` only."""
    from hadeploy.render import (
        render_haproxy_cfg,
        render_haproxy_check_script,
        render_keepalived_conf,
        render_sysctl_conf,
    )

    inv = load_inventory(hosts)
    if what == "haproxy":
        return render_haproxy_cfg(inv)
    if what == "check-script":
        return render_haproxy_check_script()
    if what == "sysctl":
        return render_sysctl_conf()
    if what != "keepalived":
        raise ValueError(f"cannot render {what!r}; choose one of {', '.join(RENDERABLE)}")
    if node is None:
        return "".join(f"# ===== {n.name} =====\n{render_keepalived_conf(inv, n)}\n"
                       for n in inv.balancers)
    names = [n.name for n in inv.balancers]
    if node not in names:
        raise InventoryError(hosts, [f"--node {node!r}: not a load-balancer node; use one of "
                                     f"{', '.join(names)}"])
    return render_keepalived_conf(inv, inv.node(node))


def make_transport(inv: Inventory, ahead: Sequence[str] = (),
                   first: str | None = None) -> Transport:
    """The SSH transport for `inv` (imported here so plans offline never load paramiko).

    With hosts `ahead`, their TCP connections are dialled first, then their SSH handshakes
    run in the background while the caller goes on (paramiko loads meanwhile): callers pass
    them only once every refusal before connecting has passed. Direct connections only: a
    gateway or an ssh_config leaves the connecting to fabric, when each host is first used.
    `first`: the run's first round trip, sent to each of them as soon as it is connected.
    """
    from hadeploy.transport.dial import Dialer

    ssh = inv.ssh
    dialer = None
    if ahead and not ssh.gateway and not ssh.config:
        nodes = {n.name: n for n in inv.nodes}
        dialer = Dialer({h: nodes[h].connect_to for h in ahead}, ssh.port, ssh.connect_timeout)
    from hadeploy.transport.ssh import SshTransport

    transport = SshTransport(ssh, list(inv.nodes))
    if dialer is not None:
        transport.connect_ahead(dialer, first)
    return transport


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop`: the engine finishes the current command, then stops."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class Deployment:
    """One inventory and its state directory: plans, deploys, rolls back and verifies it,
    telling its listeners every event of a run."""

    def __init__(self, hosts: str, listener: Listener | None = None,
                 transport_factory: Callable[[Inventory], Transport] = make_transport) -> None:
        self.inv = load_inventory(hosts)
        self.store = RunStore(state_dir_for(hosts))
        self.listeners: list[Listener] = [listener] if listener else []
        self.redactor = Redactor(self.inv.secret_values())
        self.transport_factory = transport_factory
        self.stop = threading.Event()

    def listen(self, event: Event) -> None:
        """Fan an event out to every listener."""
        for listener in self.listeners:
            listener(event)

    def new_transport(self, ahead: Sequence[str] = (), first: str | None = None) -> Transport:
        """A transport to the inventory's hosts, once the local files the inventory names
        (SSH key, known_hosts, ssh_config) are known to be usable: the last check before
        anything connects. The SSH transport starts connecting to the hosts `ahead` at
        once, and runs `first` on each as soon as it is connected (`make_transport`)."""
        check_local_files(self.inv)
        if self.transport_factory is make_transport:
            return make_transport(self.inv, ahead, first)
        return self.transport_factory(self.inv)

    def engine(self, transport: Transport, secrets: dict[str, str]) -> Engine:
        """An engine for this deployment."""
        self.redactor.add(*secrets.values())
        self.redactor.add(*private_key_lines(secrets.get(BUNDLE_SECRET, "")))
        from hadeploy.engine import Engine

        return Engine(transport, {n.name: n for n in self.inv.nodes}, self.inv.platform,
                      self.listen, self.redactor, secrets, self.stop)

    def first_deploy(self, phase: str) -> bool:
        """Whether no run of `phase` has completed yet (then the VIP must be free)."""
        return not any(j.phase == phase and j.kind == "deploy" and j.status == "done"
                       and not j.rolled_back_by for j in self.store.summaries())

    def plan(self, phase: str, offline: bool,
             only: tuple[str, ...] = ()) -> tuple[Runbook, list[PlanItem]]:
        """The plan of `phase` (offline: without connecting; profiles from the inventory)."""
        hosts = phase_hosts(self.inv, phase)
        if offline:
            engine = self.engine(_NoTransport(), read_secrets(self.inv, required=False))
            engine.assume_profiles(hosts)
            runbook = build_runbook(self.inv, phase, self.first_deploy(phase), engine.profiles,
                                    only)
            return runbook, engine.plan(runbook, offline=True)
        secrets = read_secrets(self.inv, required=True)
        transport = self.new_transport(hosts)
        try:
            engine = self.engine(transport, secrets)
            engine.gather_facts(hosts)
            runbook = build_runbook(self.inv, phase, self.first_deploy(phase), engine.profiles,
                                    only)
            return runbook, engine.plan(runbook)
        finally:
            transport.close()

    def journal_for(self, phase: str, resume: bool) -> Journal:
        """The journal to continue (`resume`) or a new one; refuses a changed inventory."""
        latest = self.store.latest(phase)
        if resume:
            if latest is None or latest.status not in RESUMABLE:
                raise JournalError(
                    f"there is no failed or interrupted {phase} run to resume"
                    f"{' (the last one finished)' if latest else ''}; run without --resume")
            if latest.fingerprint != self.inv.fingerprint:
                raise JournalError(
                    f"{self.inv.path} changed since run {latest.run_id} began, so its journal "
                    "no longer describes what to do; nothing was run. Start a new run without "
                    f"--resume (invoke deploy-{phase}): it probes every step and applies only "
                    "what differs. Or restore the inventory to resume, or undo the phase with "
                    f"invoke rollback --phase {phase}")
            return latest
        # A fresh run after a failed one is allowed: it re-checks every step, and the old
        # journal stays, because rollback undoes every run of the phase.
        run_id = self.store.new_run_id(phase, "deploy")
        return Journal(self.store.journal_path(run_id), run_id, phase, "deploy", self.inv.path,
                       self.inv.fingerprint, now())

    def _resumable(self, phase: str) -> bool:
        """Whether the state directory holds a run of `phase` to resume."""
        latest = self.store.latest(phase)
        return latest is not None and latest.status in RESUMABLE

    def _undoable(self, phase: str) -> list[Journal]:
        """Deploy runs of `phase` in the state directory that no rollback undid yet."""
        return [Journal.load(j.path) for j in self.store.summaries()
                if j.phase == phase and j.kind == "deploy" and not j.rolled_back_by]

    def adopt(self, state: HostState, phase: str) -> list[str]:
        """Save in the state directory the runs of `phase` that the hosts keep records of and
        it does not know (a workstation that lost its own, or another one's): each put
        together from every host's slice. Returns their ids."""
        from hadeploy.engine.hoststate import merge_slices

        known = {j.run_id for j in self.store.summaries()}
        adopted = []
        slices = [piece for pieces in state.records.values() for piece in pieces]
        for run_id, data in sorted(merge_slices(slices).items()):
            if run_id in known or data.get("phase") != phase:
                continue
            if not RUN_ID.fullmatch(run_id):
                raise JournalError(f"a host keeps a record of run {run_id!r}, which is not a "
                                   "run id hadeploy makes; nothing was changed. Look at "
                                   "/var/lib/hadeploy/runs on the hosts")
            path = self.store.journal_path(run_id)
            data["inventory"] = self.inv.path
            write_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
            try:
                Journal.load(path)
            except JournalError:
                path.unlink()
                raise
            adopted.append(run_id)
        return adopted

    @contextmanager
    def _session(self) -> Iterator[Callable[[dict[str, str], Sequence[str], str | None],
                                            Engine]]:
        """Hold the inventory's lock and stop on signals; yields `connect(secrets, hosts,
        first) -> Engine` (it starts connecting to `hosts` at once, and sends each the script
        `first`, the run's first round trip, once connected).

        Nothing connects until `connect` is called, so refusals inside the session (a
        journal that does not fit) touch no host; every host lock an engine took is given
        back, every transport it made closed and the lock released however the session ends.
        """
        self.store.lock()
        transports: list[Transport] = []
        engines: list[Engine] = []

        def connect(secrets: dict[str, str], hosts: Sequence[str],
                    first: str | None) -> Engine:
            transports.append(self.new_transport(hosts, first))
            engines.append(self.engine(transports[-1], secrets))
            return engines[-1]

        try:
            with stop_on_signals(self.stop):
                yield connect
        finally:
            for engine in engines:
                engine.settle_facts()
                if engine.hoststate is not None:
                    engine.hoststate.release()
            for transport in transports:
                transport.close()
            self.store.unlock()

    def deploy(self, phase: str, resume: bool = False, only: tuple[str, ...] = (),
               break_lock: bool = False,
               connecting: Callable[[], None] | None = None) -> Journal:
        """Run `phase` for real (the caller has confirmed); return the finished journal.

        Resuming with no run to resume in the state directory (the workstation that ran it
        is lost), the run is put together from the hosts' own records. `connecting` is
        called once the hosts are being connected to, before any event: what the caller
        loads then (its display) loads during their handshakes."""
        secrets = read_secrets(self.inv, required=True)
        if phase != "lb":
            # Refusals of the runbook itself (an unknown --service, an API hadeploy cannot
            # bind co-located) before anything connects, from the inventory's platforms.
            # deploy-lb's runbook refuses nothing its inventory's checks did not: it is built
            # once the facts are in, its code loading while the hosts connect.
            self.plan(phase, offline=True, only=only)
        with self._session() as connect:
            from_hosts = resume and not self._resumable(phase)
            journal = None if from_hosts else self.journal_for(phase, resume)
            hosts = phase_hosts(self.inv, phase)
            records_of = phase if from_hosts else None
            from hadeploy.engine.hoststate import facts_script, this_workstation

            # The first round trip (detection, the lock's claim) goes as soon as each host
            # is connected, while the engine's, the display's and the runbook's code load.
            owner = this_workstation(phase, "deploy")
            engine = connect(secrets, hosts, facts_script(owner, records_of))
            state = engine.hold(owner, break_lock)
            engine.start_facts(hosts, records_of)
            if connecting is not None:
                connecting()
            load_runbook_code(phase)
            if journal is not None:
                engine.run_id = journal.run_id
            engine.gather_facts(hosts, journal, records_of)
            if journal is None:
                self.adopt(state, phase)
                journal = self.journal_for(phase, resume=True)
                journal.facts = {**journal.facts, **engine.hosts.facts}
                engine.run_id = journal.run_id
            first = self.first_deploy(phase)
            runbook = build_runbook(self.inv, phase, first, engine.profiles, only)
            engine.run(runbook, journal)
            return journal

    def rollback(self, phase: str, break_lock: bool = False) -> Journal:
        """Undo every not-yet-undone run of `phase`, newest first; from the hosts' own records
        when the state directory has none (the workstation that ran them is lost)."""
        with self._session() as connect:
            engine = connect(read_secrets(self.inv, required=False), phase_hosts(self.inv, phase),
                             None)
            from hadeploy.engine.hoststate import this_workstation

            state = engine.hold(this_workstation(phase, "rollback"), break_lock)
            local = self._undoable(phase)
            engine.claim(phase_hosts(self.inv, phase), records_of=None if local else phase)
            if not local:
                self.adopt(state, phase)
            runs = self._undoable(phase)
            if not runs:
                raise JournalError(f"no {phase} run to roll back, in {self.store.runs} or in "
                                   "the hosts' records")
            run_id = self.store.new_run_id(phase, "rollback")
            log = Journal(self.store.journal_path(run_id), run_id, phase, "rollback",
                          self.inv.path, self.inv.fingerprint, now())
            for journal in runs:
                state.touch(journal)
            engine.rollback(runs, log)
            return log

    def verify(self) -> Report:
        """The live health of the balancers and the VIP, read-only (secrets masked); it
        changes nothing, on the hosts or in the journal."""
        from hadeploy.verify import gather

        secrets = read_secrets(self.inv, required=False)  # a sudo password, if one is named
        self.redactor.add(*secrets.values())
        transport = self.new_transport()
        try:
            report = gather(self.inv, transport)
        finally:
            transport.close()
        for balancer in report.balancers:
            balancer.error = self.redactor(balancer.error) if balancer.error else None
        report.problems = [self.redactor(p) for p in report.problems]
        return report


class _NoTransport:
    """Offline plans must not connect: any use is a bug."""

    probe_ahead = False

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        raise AssertionError("offline plan tried to connect")

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        raise AssertionError("offline plan tried to connect")

    def keep(self, host: str, script: str) -> None:
        raise AssertionError("offline plan tried to connect")

    def stats(self) -> Mapping[str, Any]:
        return {}

    def close(self) -> None:
        return None
