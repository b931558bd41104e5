"""The time-to-HA section of RESULTS.md (`python bench/run.py --time-to-ha`): the phase
against its floor, where hadeploy's time went, and the no-op against the SSH floor."""

from __future__ import annotations

import platform
import statistics
import time

from bench.machine import machine
from bench.time_to_ha import NOOP_TARGET, TIME_TO_HA_TARGET, TimeToHa
from hadeploy import __version__ as HADEPLOY_VERSION

TIME_TO_HA_SECTION = "## Time to HA: deploy-controllers of the whole control plane"
# The step kinds of the breakdown, in the phase's order.
KINDS = ("shared-state", "packages", "copy and edit", "services", "verify", "endpoints",
         "rc-files", "other")


def _met(value: float, target: float) -> str:
    return "yes" if value <= target else "NO"


def _runs(seconds: list[float]) -> str:
    """How the floor's figure was chosen among its runs."""
    if len(seconds) == 1:
        return "one run"
    return f"the fastest of {', '.join(f'{r:.1f}' for r in seconds)}"


def time_to_ha_section(f: TimeToHa, command: str, when: float) -> str:
    """The section's markdown."""
    info = machine()
    share = f.own / f.phase
    starts = sum(f.starts.values())
    again = sum(f.restarts.get(s, 0.0) for s in f.restarted)
    # the floor with each restart counted as a second start only (no stop, no wait for it)
    as_starts = (f.own + again - sum(f.starts[s] for s in f.restarted)) / f.phase
    noop = statistics.median(f.noop)
    ssh = statistics.median(f.ssh_floor)
    reached = ", ".join(f.noop_hosts) or "the controllers"
    steps = [(k, f.steps[k]) for k in KINDS if k in f.steps]
    steps += [(k, v) for k, v in f.steps.items() if k not in KINDS]
    return "\n".join([
        TIME_TO_HA_SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(when))} with `{command}` "
        f"on {info.cpus} CPUs ({info.cpu}), {info.os}, Python {platform.python_version()}, "
        f"hadeploy {HADEPLOY_VERSION}; load average (1 min) {f.load:.1f} after the phase. "
        "The lab: lb1-lb3 and ctl1-ctl3, ctl1 the full-plane original (provisioned in "
        f"{f.provision:.0f} s), `deploy-lb` run first ({f.deploy_lb:.1f} s); then "
        f"`deploy-controllers` of the {len(f.starts)} services it scales out to the bare ctl2 "
        "and ctl3. One run of each, in the order below; the floors ran on the same hosts.",
        "",
        "| | seconds | share of the phase |",
        "|---|---:|---:|",
        f"| `deploy-controllers`, wall time | {f.phase:.1f} | 100 % |",
        f"| floor: apt alone, {f.packages} packages on ctl2 and ctl3 at once "
        f"({_runs(f.apt_runs)}) | "
        f"{f.apt_alone:.1f} | {100 * f.apt_alone / f.phase:.0f} % |",
        f"| floor: the daemons' own starts on the new controllers (in parallel) | "
        f"{starts:.1f} | {100 * starts / f.phase:.0f} % |",
        f"| floor: the original's restarts of the {len(f.restarted)} services the phase "
        f"restarted there ({', '.join(f.restarted) or 'none'}) | "
        f"{again:.1f} | {100 * again / f.phase:.0f} % |",
        f"| **hadeploy's own share** (the rest) | **{f.own:.1f}** | **{100 * share:.0f} %** |",
        "",
        f"Target (issue 17): hadeploy's own share under {100 * TIME_TO_HA_TARGET:.0f} % of the "
        f"phase: {100 * share:.0f} %, {'met' if share < TIME_TO_HA_TARGET else 'NOT met'}. "
        f"With each of those restarts counted as a second start only (no stop, no wait for "
        f"the old process): {100 * as_starts:.0f} %.",
        "",
        "Where the phase's time went, by step kind (from its `--json` events; a kind's steps "
        "summed):",
        "",
        "| steps | seconds |",
        "|---|---:|",
        *(f"| {kind} | {seconds:.1f} |" for kind, seconds in steps),
        "",
        "Each service's start and restart on the original (its daemons started, then "
        "restarted with the phase's own commands, each timed until every API of the service "
        "answers as haproxy's check expects, polled every 0.1 s):",
        "",
        "| | " + " | ".join(f.starts) + " | sum |",
        "|---|" + "---:|" * (len(f.starts) + 1),
        "| start | " + " | ".join(f"{s:.1f}" for s in f.starts.values()) + f" | {starts:.1f} |",
        "| restart | " + " | ".join(f"{f.restarts.get(n, 0.0):.1f}" for n in f.starts)
        + f" | {sum(f.restarts.values()):.1f} |",
        "| restarted on the original by the phase | "
        + " | ".join("yes" if n in f.restarted else "no" for n in f.starts)
        + f" | {len(f.restarted)} |",
        "",
        f"**No-op re-run** of `deploy-controllers` (nothing changes), median of {len(f.noop)}: "
        f"{noop:.2f} s, against `ssh true` to the hosts it connected to ({reached}) at once "
        "on fresh connections, "
        f"median of {len(f.ssh_floor)}: {ssh:.2f} s, **{noop / ssh:.2f}x** the floor "
        f"(target {NOOP_TARGET}x: {_met(noop / ssh, NOOP_TARGET)}); "
        + (f"{f.noop_round_trips:.1f} round trips per host." if f.noop_round_trips is not None
           else "round trips not reported."),
        "",
        "- apt alone: `apt-get install -y` of every package the catalog names for the "
        "services, entered into the hosts directly (nsenter: no SSH), with a policy-rc.d that "
        "blocks service starts as hadeploy's install does; no `apt-get update`.",
        "- the daemons' starts count once, for the new controllers, which start theirs in "
        "parallel; a service whose config on the original changed (its keys now naming the "
        "VIP) counts its restart there too, as the phase's own commands take it (the old "
        "process ends first, as with `service X restart` for an operator), since it comes only "
        "once the new controllers serve, or a client would notice. Which services the phase "
        "restarted there comes from its events.",
        "- hadeploy's own share is everything else: facts and probes, the copies of the "
        "/etc trees and their proofs, the key edits, draining the original before its "
        "restarts and waiting for haproxy to see each server UP again, the endpoint moves, "
        "the verify steps, SSH itself.",
        "",
    ])
