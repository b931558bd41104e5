"""Helpers for lab tests: run hadeploy as an operator would, and look at hosts directly."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hadeploy.platforms import running_probe
from hadeploy.runbook.lb import HAPROXY_PIDFILES, KEEPALIVED_PIDFILES
from lab import Lab
from lab.inventory import LAB_VIP, lab_inventory_text, write_lab_inventory
from lab.standins import http_get, start_backends, vip_holders

ROOT = Path(__file__).resolve().parents[2]
STATS_PASSWORD = "stats-Secret-4711"
__all__ = ["http_get", "start_backends", "vip_holders"]  # shared with the demo
# Why the session's lab has no OpenStack packages (empty: it has them); conftest.py fills it
# when it builds the lab, the `openstack` tests give it as their reason to skip.
OPENSTACK_UNAVAILABLE: list[str] = []

T = TypeVar("T")


def hadeploy(*args: str, env: dict[str, str] | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run `python -m hadeploy ARGS` like an operator (no terminal), capturing output."""
    full_env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD, **(env or {})}
    full_env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "hadeploy", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def events(stdout: str) -> list[dict[str, object]]:
    """The JSON events of a `--json` run."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def inventory_variant(lab: Lab, tmp_path: Path, *, known_hosts: Path | None = None,
                      policy: str | None = None, identity: Path | None = None,
                      addresses: Mapping[str, str] | None = None) -> Path:
    """The lab's dedicated inventory with SSH settings or node addresses changed."""
    text = lab_inventory_text(lab)
    if known_hosts is not None:
        text = text.replace(f'known_hosts = "{lab.known_hosts}"', f'known_hosts = "{known_hosts}"')
    if identity is not None:
        text = text.replace(f'identity = "{lab.identity_file}"', f'identity = "{identity}"')
    if policy is not None:
        text = text.replace("connect_timeout = 5.0",
                            f'connect_timeout = 5.0\nhost_key_policy = "{policy}"')
    for host, address in (addresses or {}).items():
        text = text.replace(f'name = "{host}"\naddress = "{lab.hosts[host].address}"',
                            f'name = "{host}"\naddress = "{address}"')
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


def wait_for(check: Callable[[], T | None], what: str, seconds: float = 30.0) -> T:
    """Poll `check` until it returns something truthy, and return that; fail naming `what`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def pidfile_pid(lab: Lab, host: str, path: str) -> int | None:
    """The pid in a pid file on a host, or None."""
    out = lab.hosts[host].exec(["sh", "-c", f"cat {path} 2>/dev/null || true"]).stdout.split()
    return int(out[0]) if out else None


def snapshot(lab: Lab, host: str, paths: Sequence[str]) -> dict[str, str]:
    """sha256, mode, owner and mtime of each path (or 'absent') on a host."""
    result = {}
    for path in paths:
        out = lab.hosts[host].exec(
            ["sh", "-c", f"[ -e {path} ] && stat -c '%a %U %G %Y' {path} && sha256sum < {path}"
             " || echo absent"]).stdout
        result[path] = " ".join(out.split())
    return result


# -- an OpenStack original (lab.openstack): its admin rc file, its config trees --------------

RC = "/root/keystonerc_admin"  # the original's admin credentials (lab.openstack.keystone)
# A tree's manifest, one line per entry (path, type, owner, group, mode, link target), then
# each file's sha256; "absent" when there is no such tree.
MANIFEST = ("if ! cd {path} 2>/dev/null; then echo absent; exit 0; fi; "
            "find . -printf '%p %y %u %g %m %l\\n' | sort && "
            "find . -type f -print0 | sort -z | xargs -0 sha256sum")


def openstack_cli(lab: Lab, host: str, args: str, auth_url: str | None = None) -> str:
    """stdout of `openstack ARGS` on `host` with the admin rc file's credentials (and
    OS_AUTH_URL `auth_url` instead of the file's, if given)."""
    override = f"OS_AUTH_URL={auth_url} " if auth_url else ""
    return lab.hosts[host].exec(f". {RC} && {override}openstack {args}", timeout=120).stdout


def tree_manifest(lab: Lab, host: str, path: str) -> list[str]:
    """MANIFEST of the tree at `path` on `host`, line by line."""
    return lab.hosts[host].exec(MANIFEST.format(path=path)).stdout.splitlines()


def installed(lab: Lab, host: str, package: str) -> bool:
    """Whether dpkg says `package` is installed on `host`."""
    out = lab.hosts[host].exec(["sh", "-c", f"dpkg-query -W -f='${{db:Status-Abbrev}}' {package}"
                                " 2>/dev/null || true"]).stdout
    return out.startswith("ii")


# -- deploy-lb under faults (dedicated topology: lb1-lb3 balance, ctl1-ctl3 are backends) --

LBS = ("lb1", "lb2", "lb3")
CTLS = ("ctl1", "ctl2", "ctl3")
FILES = ("/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf",
         "/etc/keepalived/check_haproxy.sh", "/etc/sysctl.d/60-hadeploy-haproxy.conf",
         "/etc/default/haproxy")
# Everything a deploy leaves on a host that must not depend on how the run got there.
# (Backups under /var/lib/hadeploy are named after the run, so they are left out.)
END_STATE = "\n".join([
    *(f"if [ -e {f} ]; then echo \"{f} $(stat -c '%a %U %G' {f}) "
      f"$(sha256sum < {f} | cut -d' ' -f1)\"; else echo '{f} absent'; fi" for f in FILES),
    "dpkg-query -W -f='${Package} ${db:Status-Abbrev} ${Version}\\n' haproxy keepalived "
    "2>/dev/null || true",
    "echo \"sysctl $(sysctl -n net.ipv4.ip_nonlocal_bind)\"",
    f"echo \"haproxy $({running_probe('haproxy', HAPROXY_PIDFILES, 'sysv')})\"",
    f"echo \"keepalived $({running_probe('keepalived', KEEPALIVED_PIDFILES, 'sysv')})\"",
    "echo \"at boot: $(ls /etc/rc2.d | grep -E 'haproxy|keepalived' | tr '\\n' ' ')\"",
    "echo \"temp files: $(find /etc/haproxy /etc/keepalived -name '.hadeploy.*' "
    "2>/dev/null | tr '\\n' ' ')\"",
])

# What a run may leave on a host besides END_STATE, normalised so that runs compare: every
# hadeploy temp name wherever it writes (atomic writes, keepalived's config-test copy, the
# saved policy-rc.d and the guard's; only there: a host's /var and /root show the
# workstation's below its own), the backups by step and path with their checksums (the run
# id taken out), and whatever is left in /tmp (nothing of hadeploy's belongs there).
TEMP_FILES = ("echo \"hadeploy temp files: $(find /etc /usr/sbin /var/lib/hadeploy /tmp \\( "
              "-name '.hadeploy*' -o -name '*.hadeploy-*' -o -name '*.nosec' \\) -print "
              "2>/dev/null | sort | tr '\\n' ' ')\"")
IN_TMP = "echo \"in /tmp: $(ls -A /tmp | tr '\\n' ' ')\""
LEFTOVERS = "\n".join([
    TEMP_FILES,
    "echo \"backups: $(cd /var/lib/hadeploy/backup 2>/dev/null && find . -type f -exec "
    "sha256sum {} + | sed -E 's|  \\./[^/]+/|  RUN/|' | sort | tr '\\n' ' ')\"",
    IN_TMP,
])
FULL_STATE = END_STATE + "\n" + LEFTOVERS
NO_TEMP = "hadeploy temp files: "


def fresh(lab: Lab, hosts: Sequence[str]) -> None:
    """Reset `hosts` to bare Debian hosts (a new disk; cheap)."""
    for host in hosts:
        lab.hosts[host].reset()


def fresh_inventory(lab: Lab, directory: Path) -> Path:
    """Bare LB hosts and the lab's inventory for them in `directory` (a fault test's start)."""
    fresh(lab, LBS)
    return write_lab_inventory(lab, directory / "hosts.toml")


def end_state(lab: Lab, hosts: Sequence[str], probe: str = END_STATE) -> dict[str, list[str]]:
    """The output of `probe` (default: files with mode, owner and checksum, packages, sysctl,
    daemons, boot links, temp files) on each host, line by line."""
    return {h: lab.hosts[h].exec(probe).stdout.splitlines() for h in hosts}


def one_holder(lab: Lab) -> list[str]:
    """Wait until exactly one balancer holds the VIP, the one with the highest priority
    (keepalived may take a few adverts to settle), and return the holders."""
    holders: list[str] = wait_for(
        lambda: (h if (h := vip_holders(lab, LBS, LAB_VIP)) == ["lb1"] else None),
        "lb1 alone to hold the VIP")
    return holders


def clean_deploy(lab: Lab, directory: Path, backends: Sequence[int] = ()) -> Path:
    """A clean, uninterrupted `deploy-lb` on fresh hosts; returns its inventory.

    `backends`: ports on which stand-in APIs answer on the controllers (none by default).
    """
    # Controllers of a co-located test could still run keepalived for the same VIP.
    fresh(lab, LBS + CTLS)
    if backends:
        start_backends(lab, CTLS, backends)
    inventory = write_lab_inventory(lab, directory / "hosts.toml")
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert run.returncode == 0, run.stdout + run.stderr
    assert one_holder(lab) == ["lb1"]
    return inventory


def start_deploy(inventory: Path, *args: str) -> subprocess.Popen[str]:
    """`python -m hadeploy deploy-lb --yes` in the background, as an operator would."""
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}
    env.pop("NO_COLOR", None)
    return subprocess.Popen([sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts",
                             str(inventory), "--yes", *args], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def journal(inventory: Path) -> dict[str, Any]:
    """The newest journal beside `inventory` (written atomically: always complete)."""
    runs = sorted((inventory.parent / ".hadeploy" / "runs").glob("*.json"))
    data: dict[str, Any] = json.loads(runs[-1].read_text()) if runs else {}
    return data


def host_states(inventory: Path, step: str) -> dict[str, str]:
    """State of every host in `step` of the newest journal ({} before it exists)."""
    for entry in journal(inventory).get("steps", []):
        if entry["id"] == step:
            return {h: e["state"] for h, e in entry["hosts"].items()}
    return {}


def wait_journal(inventory: Path, step: str, states: set[str], every: bool,
                 proc: subprocess.Popen[str], seconds: float = 180,
                 hosts: Sequence[str] | None = None) -> None:
    """Poll the journal until some (or `every`) host of `step` (or of `hosts`) is in one of
    `states`; fail if the deploy ends first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = {h: s for h, s in host_states(inventory, step).items()
                if hosts is None or h in hosts}
        hits = [s in states for s in seen.values()]
        if hits and (all(hits) if every else any(hits)):
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"deploy ended (exit {proc.returncode}) before {step} "
                                 f"reached {states}:\n{out}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {step} to reach {states}")


# -- backups: owner-only at every level --------------------------------------------------------

HADEPLOY_HOME = "/var/lib/hadeploy"
# Every path below hadeploy's home, one per line, that a user other than root can read (a
# file) or enter (a directory): with every level owner-only there is none.
READABLE_BY_OTHERS = (
    f"[ -d {HADEPLOY_HOME} ] || exit 0\n"
    f"find {HADEPLOY_HOME} | while IFS= read -r f; do\n"
    "  if [ -d \"$f\" ]; then test=-x; else test=-r; fi\n"
    "  if runuser -u nobody -- test \"$test\" \"$f\"; then echo \"readable by others: $f\"; fi\n"
    "done\n"
)


def backup_levels(inventory: Path) -> dict[str, set[str]]:
    """Per host, every directory hadeploy made to hold a backup the journals beside
    `inventory` record: each backup's parents up to hadeploy's home."""
    levels: dict[str, set[str]] = {}
    for path in (inventory.parent / ".hadeploy" / "runs").glob("*.json"):
        for step in json.loads(path.read_text())["steps"]:
            for host, entry in step["hosts"].items():
                for change in entry.get("changes", ()):
                    backup = change.get("record", {}).get("backup")
                    parent = Path(backup).parent if backup else None
                    while parent is not None and str(parent).startswith(HADEPLOY_HOME):
                        levels.setdefault(host, set()).add(str(parent))
                        parent = parent.parent
    return levels


def backup_audit(lab: Lab, inventory: Path, hosts: Sequence[str]) -> dict[str, list[str]]:
    """What is not owner-only under every host's backup root: a level hadeploy made that is
    not 0700 root:root, or any directory or file there another user can read (audits every
    one). Empty lists when all is well."""
    levels = backup_levels(inventory)
    found: dict[str, list[str]] = {}
    for host in hosts:
        stat = "".join(f"stat -c '%n %a %U %G' {p}\n" for p in sorted(levels.get(host, ())))
        out = lab.hosts[host].exec(["sh", "-c", stat + READABLE_BY_OTHERS]).stdout
        found[host] = [line for line in out.splitlines()
                       if line.startswith("readable") or not line.endswith(" 700 root root")]
    return found


# -- kill points: a run killed outright at a command boundary (tests/lab/killable.py) ----------

# Appended to an end-state probe: what `dpkg --audit` says (nothing when all is well).
AUDIT = "echo \"dpkg audit: $(dpkg --audit 2>&1 | tr '\\n' ' ')\""
KillPoint = tuple[int, str]  # (command number k, "sent" or "read")


def killable(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """hadeploy run through tests/lab/killable.py (see there), as an operator would."""
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}
    env.pop("NO_COLOR", None)
    return subprocess.run([sys.executable, "-m", "tests.lab.killable", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ended_before(run: subprocess.CompletedProcess[str], k: int, when: str) -> bool:
    """Whether a `killable` run ended well having sent (or read) fewer than `k` commands:
    the kill point lies past this run's end, not a kill that failed (see killable.py)."""
    counts = re.search(r"^killable: (\d+) sent, (\d+) read$", run.stderr, re.MULTILINE)
    return (run.returncode == 0 and counts is not None
            and int(counts.group(1 if when == "sent" else 2)) < k)


def kill_tally(points: int, failed: int, past: Sequence[KillPoint]) -> str:
    """"k of N kill points survived", and the points past their run's end (each ended
    well before it, with the clean end state) named apart."""
    tally = f"{points - failed - len(past)} of {points} kill points survived"
    if past:
        tally += (f"; {len(past)} lay past their run's end, which was the clean one ("
                  + ", ".join(f"{k} {when}" for k, when in past) + ")")
    return tally


def both_kill_points(commands: Iterable[int]) -> list[KillPoint]:
    """(k, sent) and (k, read) for each command number k, in order."""
    return [(k, when) for k in commands for when in ("sent", "read")]


def asked_kill_points(asked: str, total: int) -> list[KillPoint] | None:
    """The kill points an environment variable asks for: `all` of a run of `total` commands,
    `A-B` those of commands A to B; None for anything else (the test's default applies)."""
    every = both_kill_points(range(1, total + 1))
    if asked == "all":
        return every
    if "-" in asked:
        first, last = (int(n) for n in asked.split("-", 1))
        return [(k, when) for k, when in every if first <= k <= last]
    return None


def seeded_sample(points: Sequence[KillPoint], size: int, seed: int) -> list[KillPoint]:
    """A fixed sample of `size` of `points` (the same for the same seed and points), sorted:
    what CI runs when every point would take too long."""
    return sorted(random.Random(seed).sample(list(points), min(size, len(points))))


def kill_haproxy_on_the_vip_holder(lab: Lab, hosts: Sequence[str]) -> tuple[str, str]:
    """Kill haproxy on the one host of `hosts` holding the VIP and wait until the VIP moves
    to another (keepalived's check script sees haproxy gone); returns (old, new) holder."""
    (holder,) = wait_for(lambda: (h if len(h := vip_holders(lab, hosts, LAB_VIP)) == 1
                                  else None), "one VIP holder")
    pid = lab.hosts[holder].exec("cat /run/haproxy.pid").stdout.split()[0]
    lab.hosts[holder].exec(["kill", pid])
    # Until the old holder hears the new one's advertisement, both may hold the VIP for a
    # moment: the move is done when exactly one other host holds it.
    (new,) = wait_for(lambda: (h if len(h := vip_holders(lab, hosts, LAB_VIP)) == 1 and
                               h != [holder] else None), "the VIP to move", seconds=30)
    return holder, new
