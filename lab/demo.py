"""`invoke demo`: both phases for real in the lab, then the VIP is shown moving.

Everything happens on simulated hosts in 198.18.0.0/24 on this machine: three load
balancers and three controllers, of which ctl1 is provisioned as a real packstack-style
original (Keystone and Glance from Debian's packages, on PostgreSQL). The demo drives
hadeploy through its public API (`hadeploy.app.Deployment` and the console printers the
tasks use) on a written inventory, and looks at the hosts through the lab only to show what
happened.

`demo_flow` runs on a lab that is already up (the lab tests call it with theirs);
`run_demo` brings one up under the machine's lab lock and takes it down afterwards.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hadeploy.app import Deployment
from hadeploy.console import EventLog, print_plan
from hadeploy.errors import StepFailed
from hadeploy.live import progress_printer
from hadeploy.verify_console import print_report
from lab import Lab, lab_lock
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.openstack import LAB_REPO_PACKAGES, OriginalController, provision_original
from lab.standins import vip_holders

LBS = ("lb1", "lb2", "lb3")
CTLS = ("ctl1", "ctl2", "ctl3")
ORIGINAL = "ctl1"

STAGES = (
    "1. The lab: 3 load balancers and 3 controllers (198.18.0.0/24)",
    "2. ctl1 becomes a single-node original: Keystone + Glance on PostgreSQL",
    "3. invoke deploy-lb --dry-run",
    "4. invoke deploy-lb --yes",
    "5. invoke deploy-controllers --yes",
    "6. invoke verify",
    "7. a token through the VIP",
    "8. kill haproxy on the VIP holder: the VIP moves",
    "9. invoke verify: the dead haproxy is reported",
)


def wait_holder(lab: Lab, not_this: str | None = None,
                seconds: float = 30) -> tuple[str, float]:
    """The single LB host holding the VIP (other than `not_this`) and how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        holders = vip_holders(lab, LBS, LAB_VIP)
        if len(holders) == 1 and holders[0] != not_this:
            return holders[0], time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError(f"no single VIP holder{f' other than {not_this}' if not_this else ''} "
                       f"appeared within {seconds:.0f} s")


def _phase(console: Console, stage: str, phase: str, inventory: Path,
           dry_run: bool = False) -> int:
    """`invoke deploy-PHASE --yes` (or `--dry-run`) through the API; returns its exit code."""
    console.rule(stage)
    deployment = Deployment(str(inventory))
    if dry_run:
        print_plan(console, deployment.plan(phase, offline=False)[1], offline=False)
        return 0
    steps = len(deployment.plan(phase, offline=True)[0].steps)
    printer = progress_printer(console, steps, deployment.redactor, json_events=False)
    # the events log an operator's run leaves beside the journal (tests look through it)
    log = EventLog(deployment.store.dir / "events.log", deployment.redactor)
    deployment.listeners += [printer, log]
    try:
        with printer:
            journal = deployment.deploy(phase)
    except StepFailed as exc:
        console.print(f"\n[bold red]FAILED[/bold red] {escape(str(exc))}")
        return 1
    finally:
        log.close()
    console.print(f"\nDone ({printer.summary()}). Journal: {journal.path}")
    return 0


def _verify(console: Console, inventory: Path) -> None:
    """`invoke verify` through the API."""
    print_report(console, Deployment(str(inventory)).verify())


def _token_through_vip(lab: Lab, original: OriginalController) -> str:
    """Issue a token with the admin rc file (now on the VIP); returns the URL used."""
    host = lab.hosts[original.host]
    url = host.exec(f". {original.admin_rc} && printf %s \"$OS_AUTH_URL\"").stdout
    host.exec(f". {original.admin_rc} && openstack token issue -f value -c expires",
              timeout=120)
    return url


@dataclass(frozen=True)
class DemoResult:
    """How the demo ended: exit code, the original controller, the inventory it wrote."""

    code: int
    original: OriginalController
    inventory: Path


def demo_flow(console: Console, lab: Lab, state_dir: Path) -> DemoResult:
    """Every stage of the demo on a running lab with LBS and CTLS (stops at a failed phase)."""
    os.environ.setdefault("HADEPLOY_STATS_PASSWORD", "demo-only-password")
    console.rule(STAGES[0])
    for name in LBS + CTLS:
        console.print(f"  {name:<5} {lab.hosts[name].address}")

    console.rule(STAGES[1])
    original = provision_original(lab, ORIGINAL, state_dir,
                                  progress=lambda line: console.print(f"  {escape(line)}"))
    console.print(f"  Keystone {original.keystone_url}, Glance {original.glance_url}; "
                  f"admin credentials in {original.admin_rc} on {ORIGINAL}; "
                  f"the catalog names {original.address}")
    inventory = write_lab_inventory(lab, state_dir / "hosts.toml",
                                    rc_files=[(ORIGINAL, original.admin_rc)])
    console.print(f"  inventory: {inventory}")

    _phase(console, STAGES[2], "lb", inventory, dry_run=True)
    for stage, phase in ((STAGES[3], "lb"), (STAGES[4], "controllers")):
        code = _phase(console, stage, phase, inventory)
        if code:
            return DemoResult(code, original, inventory)

    console.rule(STAGES[5])
    holder, _ = wait_holder(lab)
    _verify(console, inventory)

    console.rule(STAGES[6])
    url = _token_through_vip(lab, original)
    console.print(f"  openstack token issue with OS_AUTH_URL={url}: ok")

    console.rule(STAGES[7])
    pid = lab.hosts[holder].exec("cat /run/haproxy.pid").stdout.split()[0]
    lab.hosts[holder].exec(["kill", pid])
    new, took = wait_holder(lab, not_this=holder)
    console.print(f"  VIP {LAB_VIP} moved from {holder} to [bold]{new}[/bold] in {took:.1f} s")

    console.rule(STAGES[8])
    _verify(console, inventory)
    console.print(f"  (a second `invoke deploy-lb` would start haproxy on {holder} again)")
    return DemoResult(0, original, inventory)


def run_demo(console: Console, state_dir: Path, keep: bool) -> int:
    """Bring the lab up (waiting for any other lab on this machine), run the demo, take the
    lab down unless `keep`; returns the exit code."""
    with lab_lock(waiting=lambda: console.print("waiting for the lab lock: another lab "
                                                "(a test session?) runs on this machine")):
        lab = Lab.up(LBS + CTLS, state_dir, repo_packages=LAB_REPO_PACKAGES)
        try:
            return demo_flow(console, lab, state_dir).code
        finally:
            if keep:
                console.print(f"\nThe lab stays up. ssh -F {lab.ssh_config} lb1 (or ctl1 …); "
                              f"remove it with: invoke lab-down --state-dir {state_dir}")
            else:
                console.rule("10. lab down")
                lab.down()
