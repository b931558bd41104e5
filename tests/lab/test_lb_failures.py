"""deploy-lb under failures (interruptions are in test_lb_interruptions.py): a host's link
pulled mid-command, a host rebooted mid-run, hadeploy killed with SIGKILL mid-step, a full
file system under an upload, a command failing on one host only, and a journal damaged by
hand. After each, `--resume` must leave the hosts exactly as a clean run does (files with
modes, owners and checksums, packages, sysctl, daemons, boot links, backups, VIP serving the
backends), with no temp file anywhere.

A lab reboot kills every process and restarts the host on the same disk, but runs no init:
`boot_like_debian` adds what a Debian boot would do for what deploy-lb touches. A reboot
while dpkg is half-way through the install is expected to fail (pytest.xfail, at the exact
point) until the package step recovers an interrupted dpkg.

Needs root. Run: python -m pytest tests/lab/test_lb_failures.py -q
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hadeploy.journal import Journal
from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from lab.standins import STAND_IN_PORTS
from tests.lab.helpers import (
    FILES,
    FULL_STATE,
    LBS,
    NO_TEMP,
    clean_deploy,
    end_state,
    events,
    fresh_inventory,
    hadeploy,
    host_states,
    http_get,
    installed,
    journal,
    one_holder,
    snapshot,
    start_deploy,
    wait_for,
    wait_journal,
)

pytestmark = pytest.mark.lab

PACKAGES = ("haproxy", "keepalived", "socat")  # socat: drained restarts (lb.packages)
HAPROXY_CFG = FILES[0]
SYSCTL_DROPIN = FILES[3]


@pytest.fixture(scope="module")
def clean(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The end state of a clean, uninterrupted deploy on fresh hosts, backends answering."""
    clean_deploy(lab, tmp_path_factory.mktemp("clean"), backends=STAND_IN_PORTS)
    state = end_state(lab, LBS, FULL_STATE)
    for host in LBS:
        assert "haproxy running" in state[host] and "keepalived running" in state[host]
        assert NO_TEMP in state[host] and "sysctl 1" in state[host], "\n".join(state[host])
    return state


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a background deploy that is still running (a test failed half-way)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    """Wait for a background deploy and return its output; kill it if it hangs."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        stop(proc)
    return out


def resume_matches_clean(lab: Lab, inventory: Path, clean: dict[str, list[str]],
                         ) -> list[dict[str, Any]]:
    """`deploy-lb --resume --json`: it must finish, leave the clean run's end state, and the
    VIP on lb1 serving the backends. Returns the resumed run's events."""
    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--resume", "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert journal(inventory)["status"] == "done"
    assert one_holder(lab) == ["lb1"]
    assert end_state(lab, LBS, FULL_STATE) == clean
    for port in STAND_IN_PORTS:
        assert http_get(f"http://{LAB_VIP}:{port}/") in ("ctl1", "ctl2", "ctl3"), port
    return events(again.stdout)


def step_events(evs: list[dict[str, Any]], step: str) -> list[dict[str, Any]]:
    """The events of one step."""
    return [e for e in evs if e.get("step") == step]


def step_entry(inventory: Path, step: str) -> dict[str, Any]:
    """The newest journal's entry for `step`."""
    found: dict[str, Any] = next(s for s in journal(inventory)["steps"] if s["id"] == step)
    return found


def no_package_manager(lab: Lab) -> bool:
    """No apt-get or dpkg runs on any balancer (commands orphaned by a fault have ended)."""
    return not any(lab.hosts[h].exec("pgrep -x apt-get || pgrep -x dpkg", check=False).stdout
                   for h in LBS)


def boot_like_debian(lab: Lab, host: str) -> None:
    """What a Debian boot does that the lab's reboot (processes killed, same disk) leaves
    out, for what deploy-lb touches: apply /etc/sysctl.d (procps) and start the services
    linked in /etc/rc2.d (sysvinit). Without it, a rebooted lab host would lose state that
    a real one gets back from the files the run wrote before the reboot."""
    lab.hosts[host].exec(
        "for f in /etc/sysctl.d/*.conf; do sysctl -q -p \"$f\" 2>/dev/null; done; "
        "for s in /etc/rc2.d/S*haproxy /etc/rc2.d/S*keepalived; do "
        "[ -x \"$s\" ] && \"$s\" start </dev/null >/dev/null 2>&1; done; true")


def test_link_down_mid_command_fails_that_host_then_resume_matches_clean_run(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = "lb3"
    proc = start_deploy(inventory)
    try:
        # apt-get takes seconds: the cable is pulled while it runs on every host, and stays
        # out until hadeploy has given up on that host (it used to wait forever).
        wait_journal(inventory, "lb.packages", {"running"}, every=True, proc=proc)
        lab.hosts[victim].link_down()
        out = finish(proc)
    finally:
        lab.hosts[victim].link_up()
        stop(proc)
    assert proc.returncode == 1, out
    assert f"step lb.packages failed on {victim}" in out, out
    assert f"{victim}: connection to {lab.hosts[victim].address} lost" in out, out
    assert "resumable once the host is reachable again" in out, out
    assert host_states(inventory, "lb.packages") == {
        h: "failed" if h == victim else "changed" for h in LBS}
    assert set(host_states(inventory, "lb.sysctl").values()) == {"pending"}

    evs = resume_matches_clean(lab, inventory, clean)
    started = [e["hosts"] for e in step_events(evs, "lb.packages") if e["event"] == "step-started"]
    assert started == [[victim]]


def test_reboot_mid_run_then_resume_matches_clean_run(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = "lb2"
    proc = start_deploy(inventory)
    try:
        wait_journal(inventory, "lb.haproxy-cfg", {"running"}, every=True, proc=proc,
                     hosts=[victim])
        lab.hosts[victim].reboot()
        boot_like_debian(lab, victim)
        out = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode == 1, out
    failed = [s["id"] for s in journal(inventory)["steps"]
              if s["hosts"][victim]["state"] == "failed"]
    # The reboot came while lb.haproxy-cfg ran there, so it hit that step or a later one.
    assert len(failed) == 1 and failed[0] in (
        "lb.haproxy-cfg", "lb.haproxy-options", "lb.keepalived", "lb.services", "lb.verify"), out
    assert f"step {failed[0]} failed on {victim}" in out, out
    assert "--resume" in out, out
    resume_matches_clean(lab, inventory, clean)


def test_reboot_while_dpkg_installs_then_resume_matches_clean_run(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = lab.hosts["lb2"]
    proc = start_deploy(inventory)
    try:
        wait_journal(inventory, "lb.packages", {"running"}, every=True, proc=proc)
        # dpkg's audit lists packages it left half-way, the very state a crash leaves.
        wait_for(lambda: victim.exec("dpkg --audit", check=False).stdout.strip(),
                 "dpkg to be half-way through the install on lb2", seconds=60)
        victim.reboot()
        out = finish(proc)
    finally:
        stop(proc)
    assert proc.returncode == 1, out
    assert "step lb.packages failed on lb2" in out, out
    # The install really was cut off half-way: dpkg's own audit says so.
    assert victim.exec("dpkg --audit", check=False).stdout.strip(), "dpkg finished"
    # The package step finishes dpkg's half-done work (`dpkg --configure -a`) before apt-get.
    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--resume", "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    assert one_holder(lab) == ["lb1"]
    assert end_state(lab, LBS, FULL_STATE) == clean


def test_sigkill_mid_step_leaves_a_valid_journal_and_resume_rechecks_the_step(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    proc = start_deploy(inventory)
    try:
        # Every host is in lb.packages with its intent journaled, so apt-get is under way.
        wait_journal(inventory, "lb.packages", {"running"}, every=True, proc=proc)
        wait_for(lambda: all(step_entry(inventory, "lb.packages")["hosts"][h]["changes"]
                             for h in LBS), "the install intents", seconds=60)
        proc.send_signal(signal.SIGKILL)  # no handler runs, nothing more is written
        out = finish(proc, 60)
    finally:
        stop(proc)
    assert proc.returncode == -signal.SIGKILL, out
    (path,) = (tmp_path / ".hadeploy" / "runs").glob("*.json")
    killed = Journal.load(path)  # complete and valid: every write was atomic
    assert killed.status == "running"
    states = {h: e.state for h, e in killed.step("lb.packages").hosts.items()}
    assert states == dict.fromkeys(LBS, "running")
    # The installs go on without hadeploy; resume only once they are over.
    wait_for(lambda: no_package_manager(lab), "the orphaned installs to end", seconds=120)
    done_before = {h for h in LBS if all(installed(lab, h, p) for p in PACKAGES)}

    evs = resume_matches_clean(lab, inventory, clean)
    packages = step_events(evs, "lb.packages")
    # Re-checked rather than trusted: the step runs again on every host it was running on...
    assert "step-skipped" not in [e["event"] for e in packages]
    assert [sorted(e["hosts"]) for e in packages if e["event"] == "step-started"] == [list(LBS)]
    assert {e["host"] for e in packages if e["event"] == "host-changed"} == set(LBS)
    # ...and its probe decides: apt-get runs again only where the install is not there.
    installs = {e["host"] for e in packages
                if e["event"] == "command" and "apt-get install" in e["command"]}
    assert installs == set(LBS) - done_before
    # The record journaled before the kill is kept, so rollback still knows what to remove.
    for host in LBS:
        (change,) = step_entry(inventory, "lb.packages")["hosts"][host]["changes"]
        assert change["record"]["requested"] == list(PACKAGES)


# Injected by dpkg itself right after it installed haproxy on the victim (a DPkg::Post-Invoke
# hook that removes itself), so the timing is exact: /etc/haproxy becomes a tmpfs holding a
# copy of what the package put there, shrunk to exactly what that copy uses. The upload of
# haproxy.cfg then meets ENOSPC. The state of the live file is kept in FULL_BEFORE.
FULL_HOOK = "/etc/apt/apt.conf.d/99hadeploy-test-full"
FULL_BEFORE = "/run/hadeploy-test-full.before"
FILL_HAPROXY_DIR = f"""
set -e
rm -f {FULL_HOOK}
keep=/run/hadeploy-test-full
mkdir -p "$keep"
cp -a /etc/haproxy/. "$keep/"
{{ stat -c '%a %U %G %Y' {HAPROXY_CFG}; sha256sum < {HAPROXY_CFG}; }} > {FULL_BEFORE}
mount -t tmpfs -o size=1m hadeploy-test-full /etc/haproxy
cp -a "$keep/." /etc/haproxy/
rm -rf "$keep"
used=$(df -k --output=used /etc/haproxy | tail -n 1 | tr -d ' ')
mount -o remount,size="$used"k /etc/haproxy
"""


def test_full_file_system_during_upload_leaves_live_file_and_no_temp_then_resume(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = lab.hosts["lb2"]
    victim.exec(f"cat > /run/hadeploy-test-full.sh && echo 'DPkg::Post-Invoke "
                f"{{\"sh /run/hadeploy-test-full.sh\";}};' > {FULL_HOOK}", input=FILL_HAPROXY_DIR)
    try:
        run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
        out = run.stdout + run.stderr
        assert victim.exec("stat -f -c %T /etc/haproxy").stdout.strip() == "tmpfs", out
        assert run.returncode == 1, out
        assert "step lb.haproxy-cfg failed on lb2" in out, out
        assert f"lb2: command exited 1: write {HAPROXY_CFG}" in out, out
        assert "No space left on device" in out, out
        assert host_states(inventory, "lb.haproxy-cfg") == {
            "lb1": "changed", "lb2": "failed", "lb3": "changed"}
        # The live file is the one the package installed, byte for byte, mode, owner, mtime.
        before = " ".join(victim.exec(f"cat {FULL_BEFORE}").stdout.split())
        assert snapshot(lab, "lb2", [HAPROXY_CFG])[HAPROXY_CFG] == before
        # No temp file beside it, and no backup either (taken only just before the rename).
        names = victim.exec("ls -A /etc/haproxy").stdout.split()
        assert not [n for n in names if n.startswith(".hadeploy")], names
        assert victim.exec("find /var/lib/hadeploy/backup -type f 2>/dev/null; true").stdout == ""
    finally:
        victim.exec(f"rm -f {FULL_HOOK} /run/hadeploy-test-full.sh {FULL_BEFORE}; "
                    "umount /etc/haproxy 2>/dev/null; true")
    resume_matches_clean(lab, inventory, clean)


def test_command_failing_on_one_host_rolls_back_there_and_resume_redoes_only_that_host(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = fresh_inventory(lab, tmp_path)
    victim = lab.hosts["lb2"]
    # lb2's /etc/sysctl.d is read-only: in lb.sysctl, `sysctl -w` works there as everywhere,
    # then writing the drop-in fails on lb2 alone.
    victim.exec("mount --bind /etc/sysctl.d /etc/sysctl.d && "
                "mount -o remount,bind,ro /etc/sysctl.d")
    try:
        run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes", "--json")
    finally:
        victim.exec("umount /etc/sysctl.d")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "step lb.sysctl failed on lb2" in out and "Read-only file system" in out, out
    assert host_states(inventory, "lb.sysctl") == {"lb1": "changed", "lb2": "failed",
                                                   "lb3": "changed"}
    for later in ("lb.haproxy-cfg", "lb.haproxy-options", "lb.keepalived", "lb.services",
                  "lb.verify"):
        assert set(host_states(inventory, later).values()) == {"pending"}, later
    # Rolled back where it failed: lb2's value is back and every change it recorded undone;
    # lb1 and lb3 keep theirs, recorded in the journal.
    sysctl = {h: lab.hosts[h].exec("sysctl -n net.ipv4.ip_nonlocal_bind").stdout.strip()
              for h in LBS}
    assert sysctl == {"lb1": "1", "lb2": "0", "lb3": "1"}
    step = step_entry(inventory, "lb.sysctl")
    assert [c.get("rolled_back") for c in step["hosts"]["lb2"]["changes"]] == [True, True]
    for host in ("lb1", "lb3"):
        assert [c["op"] for c in step["hosts"][host]["changes"]] == ["sysctl", "sysctl-persist"]
        assert not any(c.get("rolled_back") for c in step["hosts"][host]["changes"])
    assert "absent" in snapshot(lab, "lb2", [SYSCTL_DROPIN])[SYSCTL_DROPIN]
    failed = [e for e in events(run.stdout) if e["event"] == "host-failed"]
    assert [(e["step"], e["host"]) for e in failed] == [("lb.sysctl", "lb2")]
    assert SYSCTL_DROPIN in str(failed[0]["error"])

    evs = resume_matches_clean(lab, inventory, clean)
    # Only what was missing: lb.packages is done everywhere, lb.sysctl only on lb2.
    assert [e["event"] for e in step_events(evs, "lb.packages")] == ["step-skipped"]
    sysctl_events = step_events(evs, "lb.sysctl")
    assert [e["hosts"] for e in sysctl_events if e["event"] == "step-started"] == [["lb2"]]
    assert {e["host"] for e in sysctl_events if e["host"]} == {"lb2"}
    assert any(e["event"] == "command" for e in sysctl_events)


def logins(lab: Lab, host: str) -> int:
    """SSH logins sshd has logged on `host` since it booted."""
    out = lab.hosts[host].exec("grep -c 'Accepted publickey' /var/log/syslog || true").stdout
    return int(out.strip() or 0)


def test_damaged_journal_is_refused_naming_it_and_nothing_runs(
        lab: Lab, tmp_path: Path, clean: dict[str, list[str]]) -> None:
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    first = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert first.returncode == 0, first.stdout + first.stderr
    (path,) = (tmp_path / ".hadeploy" / "runs").glob("*.json")
    good = path.read_bytes()
    odd_state = json.loads(good)
    odd_state["steps"][3]["hosts"]["lb2"]["state"] = "finished"
    odd_change = json.loads(good)
    odd_change["steps"][3]["hosts"]["lb2"]["changes"] = ["restored by hand"]
    damaged = {"truncated": (good[:len(good) // 2], "cannot be read"),
               "unknown state": (json.dumps(odd_state).encode(), "is damaged"),
               "malformed change": (json.dumps(odd_change).encode(), "is damaged")}
    before = {h: (end_state(lab, (h,), FULL_STATE), logins(lab, h)) for h in LBS}
    for what, (content, why) in damaged.items():
        path.write_bytes(content)
        for args in (("deploy-lb", "--resume", "--yes"), ("deploy-lb", "--yes"), ("status",)):
            run = hadeploy(*args, "--hosts", str(inventory))
            out = run.stdout + run.stderr
            assert run.returncode == 2, (what, args, out)
            assert f"journal {path} {why}" in out, (what, args, out)
            assert "nothing was run" in out and f"mv {path} {path}.broken" in out, out
            assert "Traceback" not in out, out
    assert {h: (end_state(lab, (h,), FULL_STATE), logins(lab, h)) for h in LBS} == before
    # The way forward the error names: moved aside, status reads again and a fresh run
    # re-checks every step and finds nothing to change.
    path.rename(path.with_name(path.name + ".broken"))
    status = hadeploy("status", "--hosts", str(inventory))
    assert status.returncode == 0 and "No runs yet" in status.stdout, status.stdout + status.stderr
    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    kinds = {e["event"] for e in events(again.stdout)}
    assert "host-ok" in kinds and "host-changed" not in kinds
