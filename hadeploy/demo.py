"""`invoke demo`: the lab comes up, deploy-lb runs for real, the VIP is shown moving.

Everything happens on simulated hosts in 198.18.0.0/24 on this machine. The demo drives
hadeploy exactly as an operator would (the same tasks, a written inventory), and looks at
the hosts through the lab only to show what happened.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from rich.console import Console

from hadeploy.lab import Lab
from hadeploy.lab.standins import STAND_IN_PORTS, start_backends, vip_holders
from hadeploy.lab_inventory import LAB_VIP, write_lab_inventory
from hadeploy.tasks import run_phase

LBS = ("lb1", "lb2", "lb3")
CTLS = ("ctl1", "ctl2", "ctl3")


def _wait_holder(lab: Lab, not_this: str | None = None, seconds: float = 30) -> tuple[str, float]:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        holders = vip_holders(lab, LBS, LAB_VIP)
        if len(holders) == 1 and holders[0] != not_this:
            return holders[0], time.monotonic() - started
        time.sleep(0.2)
    raise RuntimeError("no single VIP holder appeared")


def run_demo(console: Console, state_dir: Path, keep: bool) -> int:
    """Run the demo; returns the exit code."""
    os.environ.setdefault("HADEPLOY_STATS_PASSWORD", "demo-only-password")
    console.rule("1. The lab: 3 load balancers and 3 controllers (198.18.0.0/24)")
    lab = Lab.up(LBS + CTLS, state_dir)
    try:
        for name, host in lab.hosts.items():
            console.print(f"  {name:<5} {host.address}")
        start_backends(lab, CTLS)
        inventory = write_lab_inventory(lab, state_dir / "hosts.toml")
        console.print(f"  inventory: {inventory}")
        console.rule("2. invoke deploy-lb --dry-run")
        run_phase("lb", str(inventory), dry_run=True, offline=False, resume=False, yes=True,
                  json_events=False)
        console.rule("3. invoke deploy-lb --yes")
        code = run_phase("lb", str(inventory), dry_run=False, offline=False, resume=False,
                         yes=True, json_events=False)
        if code:
            return code
        holder, _ = _wait_holder(lab)
        console.rule("4. verify")
        console.print(f"  VIP {LAB_VIP} is held by [bold]{holder}[/bold]")
        import urllib.request

        for port in STAND_IN_PORTS:
            with urllib.request.urlopen(f"http://{LAB_VIP}:{port}/", timeout=3) as reply:
                console.print(f"  http://{LAB_VIP}:{port}/ answered by "
                              f"{reply.read().decode().strip()}")
        console.rule(f"5. kill haproxy on {holder}: the VIP moves")
        pid = lab.hosts[holder].exec("cat /run/haproxy.pid").stdout.split()[0]
        lab.hosts[holder].exec(["kill", pid])
        new, took = _wait_holder(lab, not_this=holder)
        console.print(f"  VIP moved from {holder} to [bold]{new}[/bold] in {took:.1f} s")
        console.rule("6. a second deploy-lb repairs haproxy and changes nothing else")
        run_phase("lb", str(inventory), dry_run=False, offline=False, resume=False, yes=True,
                  json_events=False)
        return 0
    finally:
        if keep:
            console.print(f"\nThe lab stays up. ssh -F {lab.ssh_config} lb1 ; "
                          f"remove it with: invoke lab-down --state-dir {state_dir}")
        else:
            console.rule("7. lab down")
            lab.down()
