"""`python bench/run.py --time-to-ha`: what an operator waits for most, `deploy-controllers`
of the whole control plane (issue 17), next to the floor no tool can beat.

One lab (lb1-lb3, ctl1-ctl3): ctl1 provisioned with the full plane (lab.openstack.FULL_PLANE),
Glance's store on a directory the controllers share, `deploy-lb` run once. Then, in order:

  apt alone        on bare ctl2 and ctl3 at once, entered directly (no SSH, no tool), `apt-get
                   install` of every package the catalog names for the balanced services, with
                   service starts blocked as hadeploy blocks them; the hosts are reset after.
                   Twice, the faster counting: the first reads the .debs from disk, and
                   hadeploy's install after it finds them in the page cache
  daemon restarts  on the original, each service's daemons (running since the provisioning)
  and starts       restarted as the phase restarts them (the same commands, workers first)
                   and timed until every API of the service answers as haproxy's check
                   expects (polled every 0.1 s); then stopped, started, and timed until its
                   APIs answer again
  hadeploy         `deploy-controllers --yes --json` on the bare ctl2 and ctl3: the phase's
                   wall time, and each step's from its events
  no-op            the same command again, three times (nothing changes), against `ssh true`
                   to the hosts it connected to (the controllers) at once on fresh
                   connections, three times

The floor of the phase: apt alone, plus the daemons' starts on the new controllers (in
parallel), plus, for each service the phase restarted on the original (its events say which:
only a service whose config there changed restarts), that restart's own time: the original
restarts only once the new controllers serve (a client must not notice), and a restart waits
for the old process to end (heat-engine's graceful stop alone takes seconds). hadeploy's own
share is the phase's wall time less that floor. Needs root; the lab
lock of HADEPLOY_LAB_SLOT is held throughout. The runs' events stay in the state directory
(time-to-ha-events.log, owner-only as hadeploy writes it).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.floors import AptFailed, apt_alone, ssh_floor
from bench.hadeploy_runner import run_finished
from bench.lab_setup import STATS_PASSWORD
from bench.process import log, must, timed
from hadeploy.catalog import Service, Variant, load_catalog
from hadeploy.facts.system import ServiceState
from hadeploy.inventory import load_inventory
from hadeploy.inventory.model import Node
from hadeploy.ops.base import HostContext
from hadeploy.ops.services import stop_and_wait
from hadeploy.platforms import profile_for
from hadeploy.runbook.api_answers import ALL_ANSWER, api_probe_script, api_target
from hadeploy.runbook.drains import daemon_running
from lab import LAB_LOCK, Lab, ensure_repo, lab_lock
from lab.inventory import write_lab_inventory
from lab.openstack import ADMIN_RC, FULL_PLANE, FULL_PLANE_REPO_PACKAGES, provision_original
from lab.openstack.planes import FULL_PLANE_SERVICES
from lab.openstack.shared_store import share_directory, unshare_directory

LBS = ("lb1", "lb2", "lb3")
ORIGINAL = "ctl1"
NEW = ("ctl2", "ctl3")
NOOP_RUNS = 3
APT_RUNS = 2
TIME_TO_HA_TARGET = 0.25  # issue 17: hadeploy's own share of the phase
NOOP_TARGET = 1.5  # issue 17: a no-op within 1.5x the parallel fresh-connection SSH floor


@dataclass
class TimeToHa:
    """The figures of one measurement (seconds unless named otherwise)."""

    packages: int = 0
    apt_alone: float = 0.0
    apt_runs: list[float] = field(default_factory=list)
    starts: dict[str, float] = field(default_factory=dict)
    restarts: dict[str, float] = field(default_factory=dict)  # on the original
    restarted: list[str] = field(default_factory=list)  # on the original, by the phase
    phase: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    noop: list[float] = field(default_factory=list)
    noop_round_trips: float | None = None
    noop_hosts: list[str] = field(default_factory=list)  # the hosts the no-op connected to
    ssh_floor: list[float] = field(default_factory=list)
    load: float = 0.0
    provision: float = 0.0
    deploy_lb: float = 0.0

    @property
    def floor(self) -> float:
        """apt alone, the daemons' starts on the new controllers, and the restart on the
        original of each service the phase restarted there."""
        again = sum(self.restarts.get(s, 0.0) for s in self.restarted)
        return self.apt_alone + sum(self.starts.values()) + again

    @property
    def own(self) -> float:
        """The phase's wall time less the floor."""
        return self.phase - self.floor


def step_kind(step: str) -> str:
    """What a controllers step does, for the breakdown: ctl.SVC.KIND -> KIND (the config
    edits and copies together), ctl.packages -> packages, ctl.endpoints -> endpoints, the
    rest -> other."""
    parts = step.split(".")
    if len(parts) == 3 and parts[0] == "ctl":
        kind = parts[2]
        return "copy and edit" if kind in ("vip-keys", "copy", "host-keys", "shell-vars",
                                           "bind") else kind
    return parts[1] if len(parts) == 2 and parts[0] == "ctl" else "other"


def json_events(stdout: str) -> Iterator[dict[str, Any]]:
    """The events of a `--json` run's output, in order (its other lines skipped)."""
    return (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))


def step_seconds(stdout: str) -> dict[str, float]:
    """Seconds per step kind (`step_kind`), from a `--json` run's step-started and
    step-finished events."""
    started: dict[str, float] = {}
    kinds: dict[str, float] = {}
    for event in json_events(stdout):
        if event["event"] == "step-started":
            started[event["step"]] = float(event["time"])
        elif event["event"] == "step-finished" and event["step"] in started:
            kind = step_kind(event["step"])
            kinds[kind] = kinds.get(kind, 0.0) + float(event["time"]) - started[event["step"]]
    return kinds


def restarted_services(stdout: str, host: str = ORIGINAL) -> list[str]:
    """The services whose daemons a `--json` run changed on `host` in their services step
    (on the original, running daemons: a restart), in the run's order."""
    found: list[str] = []
    for event in json_events(stdout):
        parts = str(event.get("step") or "").split(".")
        if (event["event"] == "host-changed" and event.get("host") == host and len(parts) == 3
                and parts[0] == "ctl" and parts[2] == "services" and parts[1] not in found):
            found.append(parts[1])
    return found


def catalog_services() -> list[Service]:
    """The balanced services that deploy-controllers scales out, in the inventory's order."""
    catalog = load_catalog()
    return [catalog[s] for s in FULL_PLANE_SERVICES if not catalog[s].lb_only]


def _install_floor(lab: Lab, packages: list[str], logs: Path) -> float:
    """apt-get install of `packages` on the bare new controllers at once (service starts
    blocked, as hadeploy blocks them): the wall time; the hosts are reset after.

    A failed install is no measurement, so it runs once more on reset hosts, saying so: the
    dashboard's postinst (Django's collectstatic and compress) has failed now and then
    here, in this plain install only, not so far in hadeploy's own of the same packages;
    apt's whole output is kept in `logs` for a look at why."""
    for attempt in (1, 2):
        try:
            return apt_alone(lab, NEW, packages, block_starts=True, logs=logs)
        except AptFailed as failed:
            if attempt == 2:
                raise
            log(f"time to HA: apt alone failed, once more on reset hosts: {failed}")
        finally:
            for name in NEW:
                lab.hosts[name].reset()
    raise AssertionError("unreachable")


def phase_restart_script(node: Node, variant: Variant, daemon: str) -> str:
    """The command the phase restarts `daemon` on the original with: that of the runbook's
    own operation (`runbook.drains.daemon_running`) for a running daemon whose config
    changed."""
    changed = frozenset({"config"})
    op = daemon_running(variant, daemon, changed, restart_only=False)
    ctx = HostContext(node, profile_for("debian", "sysv"), "bench", "bench",
                      changed_steps=changed)
    (command,) = op.apply(ctx, ServiceState(enabled=True, running=True))
    return command.script


def _start_restart_seconds(lab: Lab, node: Node, service: Service) -> tuple[float, float]:
    """On the original: the service's running daemons restarted as the phase restarts them
    (the same commands, workers first, then the APIs) and timed until every API of the
    service answers as haproxy's check expects; then stopped, started (in the catalog's
    order) and timed until they answer again. The restart comes first, while the daemons
    have run since the provisioning, as they have when the phase restarts them (a daemon
    restarted seconds after its start stops faster: heat's whole restart then took 3.1 s,
    where the phase's restart of heat-engine alone took 17-19 s).
    (start seconds, restart seconds)."""
    host = lab.hosts[ORIGINAL]
    profile = profile_for("debian", "sysv")
    variant = service.variant("debian", "modern")
    targets = [api_target(host.address, p, "modern") for p in service.proxies_for("modern")]
    answers = api_probe_script(targets, 120, pause=0.1)
    restarts = "; ".join(f"( {phase_restart_script(node, variant, d)} ) >/dev/null 2>&1"
                         for d in (*variant.workers, *variant.api_daemons()))
    starts = "; ".join(f"{profile.action(d, 'start')} >/dev/null 2>&1" for d in variant.daemons)

    def until_answers(script: str, what: str) -> float:
        began = time.monotonic()
        done = host.exec(f"{script}; {answers}", check=False, timeout=240)
        if done.stdout.strip() != ALL_ANSWER:
            raise SystemExit(f"{service.name} did not answer on {ORIGINAL} after its {what}: "
                             f"{done.stdout}{done.stderr}")
        return time.monotonic() - began

    restart = until_answers(restarts, "restart")
    for daemon in reversed(variant.daemons):
        host.exec(stop_and_wait(profile, daemon, variant.sysv_pidfiles(daemon)),
                  check=False, timeout=60)
    return until_answers(starts, "start"), restart


def _hadeploy(inventory: Path, env: dict[str, str], what: str, *args: str) -> tuple[float, str]:
    """`python -m hadeploy ARGS --hosts INV --yes --json`: wall time and stdout."""
    result = must(timed([sys.executable, "-m", "hadeploy", *args, "--hosts", str(inventory),
                         "--yes", "--json"], env), f"hadeploy {what}")
    return result.seconds, result.stdout


def measure_time_to_ha(state_dir: Path, progress: Callable[[TimeToHa], None]) -> TimeToHa:
    """Bring the full-plane lab up, measure (see the module docstring), take it down."""
    with lab_lock(LAB_LOCK, waiting=lambda: log(f"time to HA: waiting for {LAB_LOCK}")):
        ensure_repo(FULL_PLANE_REPO_PACKAGES)
        lab = Lab.up((*LBS, ORIGINAL, *NEW), state_dir / "lab",
                     repo_packages=FULL_PLANE_REPO_PACKAGES)
        work = state_dir / "time-to-ha"
        shared: Path | None = None
        try:
            work.mkdir(parents=True, exist_ok=True)
            figures = TimeToHa()
            started = time.monotonic()
            log("time to HA: provisioning the full-plane original on ctl1")
            provision_original(lab, ORIGINAL, work, plane=FULL_PLANE)
            figures.provision = time.monotonic() - started
            shared = share_directory(lab, (ORIGINAL, *NEW))
            _measure(lab, work, figures, progress)
            return figures
        finally:
            if shared is not None:
                unshare_directory(lab, (ORIGINAL, *NEW), shared)
            lab.down()
            # the runs' events, for a closer look at where the phase's time went
            events = work / ".hadeploy" / "events.log"
            if events.exists():
                shutil.copy2(events, state_dir / "time-to-ha-events.log")
            shutil.rmtree(work, ignore_errors=True)


def _measure(lab: Lab, work: Path, figures: TimeToHa,
             progress: Callable[[TimeToHa], None]) -> None:
    """The measurements of the module docstring, in its order, on the provisioned lab;
    `progress` gets the figures after each."""
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD, "NO_COLOR": "1"}
    inventory = write_lab_inventory(lab, work / "hosts.toml", services=FULL_PLANE_SERVICES,
                                    rc_files=[(ORIGINAL, ADMIN_RC)])
    figures.deploy_lb, _ = _hadeploy(inventory, env, "deploy-lb", "deploy-lb")
    original = load_inventory(str(inventory)).node(ORIGINAL)
    services = catalog_services()
    packages = list(dict.fromkeys(p for s in services
                                  for p in s.variant("debian", "modern").packages))
    figures.packages = len(packages)
    log(f"time to HA: apt alone, {len(packages)} packages on {', '.join(NEW)}")
    for _ in range(APT_RUNS):
        figures.apt_runs.append(_install_floor(lab, packages, work.parent))
    figures.apt_alone = min(figures.apt_runs)
    progress(figures)
    for service in services:
        start, restart = _start_restart_seconds(lab, original, service)
        figures.starts[service.name], figures.restarts[service.name] = start, restart
        log(f"time to HA: {service.name} starts in {start:.1f} s, restarts in {restart:.1f} s")
    progress(figures)
    log("time to HA: hadeploy deploy-controllers")
    figures.phase, stdout = _hadeploy(inventory, env, "deploy-controllers",
                                      "deploy-controllers")
    figures.steps = step_seconds(stdout)
    figures.restarted = restarted_services(stdout)
    figures.load = os.getloadavg()[0]
    progress(figures)
    for _ in range(NOOP_RUNS):
        seconds, stdout = _hadeploy(inventory, env, "no-op", "deploy-controllers")
        if '"event": "host-changed"' in stdout:
            raise SystemExit("the re-run of deploy-controllers changed something: not a no-op")
        figures.noop.append(seconds)
        finished = run_finished(stdout)
        trips = finished.get("round_trips", {})
        figures.noop_round_trips = statistics.mean(trips.values()) if trips else None
        # the floor: the hosts the no-op connected to (the controllers: a no-op drains
        # nothing, so it never reaches the balancers)
        reached = tuple(finished.get("connections", {})) or (ORIGINAL, *NEW)
        figures.noop_hosts = list(reached)
        figures.ssh_floor.append(ssh_floor(lab, reached))
    progress(figures)


def write_figures(path: Path, figures: TimeToHa) -> None:
    """The figures so far as JSON (an interrupted run keeps what it measured)."""
    data: dict[str, Any] = dict(figures.__dict__)
    data["floor"], data["own"] = figures.floor, figures.own
    path.write_text(json.dumps(data, indent=1) + "\n")
