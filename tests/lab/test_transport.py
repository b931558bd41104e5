"""The SSH transport through the lab's real sshd, as the non-root `hadeploy` user with sudo:
commands and sudo, atomic upload that a failed validation leaves untouched, a tree copied by
owner *name* between hosts whose uids differ, the host-key policies, and a connection
dropped in the middle of a real `deploy-lb` that `--resume` then finishes.

Needs root. Run: python -m pytest tests/lab/test_transport.py -m lab
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from hadeploy.app import make_transport
from hadeploy.engine import Engine
from hadeploy.errors import HostKeyError, StepFailed, TransportError
from hadeploy.events import Event
from hadeploy.facts.trees import manifest_script, parse_manifest
from hadeploy.inventory import Inventory, load_inventory
from hadeploy.journal import Journal, now
from hadeploy.ops import AnyOp, FileContent, TreeCopied
from hadeploy.ops.trees import differences
from hadeploy.steps import Runbook, Step
from hadeploy.transport.base import Transport
from hadeploy.transport.dial import dial
from hadeploy.transport.ssh import SshTransport
from lab import Lab
from tests.lab.helpers import LBS, ROOT, STATS_PASSWORD, hadeploy, inventory_variant

pytestmark = pytest.mark.lab



def load(path: Path) -> Inventory:
    return load_inventory(str(path))


@pytest.fixture
def inv(lab: Lab, tmp_path: Path) -> Inventory:
    return load(inventory_variant(lab, tmp_path))


@pytest.fixture
def transport(inv: Inventory) -> Iterator[SshTransport]:
    ssh = SshTransport(inv.ssh, list(inv.nodes))
    yield ssh
    ssh.close()


def fresh(lab: Lab, *hosts: str) -> None:
    for host in hosts:
        lab.hosts[host].reset()


def run_step(inv: Inventory, transport: SshTransport, tmp_path: Path,
             ops: Mapping[str, tuple[AnyOp, ...]], run_id: str) -> tuple[Journal, list[Event]]:
    """Run one step through the engine and a journal; return both (raise on failure)."""
    events: list[Event] = []
    engine = Engine(transport, {n.name: n for n in inv.nodes}, inv.platform, events.append)
    journal = Journal(tmp_path / "runs" / f"{run_id}.json", run_id, "t", "deploy",
                      inv.path, inv.fingerprint, now())
    engine.gather_facts(tuple(ops), journal)
    try:
        engine.run(Runbook("t", (Step("t.step", "test step", ops),)), journal)
    except StepFailed:
        journal.save()
        raise
    return journal, events


def rollback(inv: Inventory, transport: SshTransport, tmp_path: Path, journal: Journal) -> None:
    engine = Engine(transport, {n.name: n for n in inv.nodes}, inv.platform, lambda e: None)
    log = Journal(tmp_path / "runs" / f"{journal.run_id}-undo.json", f"{journal.run_id}-undo",
                  "t", "rollback", inv.path, inv.fingerprint, now())
    engine.rollback([journal], log)


# -- commands, sudo, connection reuse ---------------------------------------------------------


def test_run_and_sudo_as_the_non_root_user(lab: Lab, inv: Inventory,
                                           transport: SshTransport) -> None:
    fresh(lab, "lb1")
    assert inv.ssh.user == "hadeploy" and inv.ssh.sudo
    assert transport.run("lb1", "whoami").stdout == "root\n"
    plain = SshTransport(replace(inv.ssh, sudo=False), list(inv.nodes))
    try:
        assert plain.run("lb1", "whoami").stdout == "hadeploy\n"
    finally:
        plain.close()
    data = bytes(range(256)) * 64
    result = transport.run("lb1", "sha256sum | cut -d' ' -f1; echo out; echo err >&2; exit 3",
                           stdin=data)
    assert (result.exited, result.stderr) == (3, "err\n")
    assert result.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert transport.read("lb1", "printf 'a\\0b'") == b"a\0b"
    started = time.monotonic()
    for _ in range(20):
        transport.run("lb1", "true").check()
    per_command = (time.monotonic() - started) / 20
    assert transport.stats()["connections"] == {"lb1": 1}, "one reused connection per host"
    print(f"reused connection: {per_command * 1000:.1f} ms per sudo command")


def test_two_commands_on_one_host_run_at_once_on_its_one_connection(
        lab: Lab, transport: SshTransport) -> None:
    """Each command holds the host's lock only to open its session channel: two commands
    that each wait (bounded) for the other's file both succeed, which they cannot in turn;
    still one connection."""
    fresh(lab, "lb1")

    def meet(mine: str, theirs: str) -> str:
        return (f"touch /root/{mine}; i=0; while [ ! -e /root/{theirs} ] && [ $i -lt 100 ]; "
                f"do sleep 0.1; i=$((i+1)); done; test -e /root/{theirs}")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda pair: transport.run("lb1", meet(*pair)),
                                [("one", "two"), ("two", "one")]))
    assert [r.exited for r in results] == [0, 0]
    assert transport.stats()["connections"] == {"lb1": 1}
    assert transport.stats()["round_trips"] == {"lb1": 2}


def test_the_first_script_runs_once_connected_and_its_result_is_taken_once(
        lab: Lab, inv: Inventory) -> None:
    """`first` runs on the host as soon as its connection is up, before anything asks; the
    run of that very script takes its result (not run a second time), a later one runs."""
    fresh(lab, "lb2")
    first = "echo x >> /root/first-count; wc -l < /root/first-count"
    ssh = make_transport(inv, ("lb2",), first)
    try:
        assert isinstance(ssh, SshTransport)
        deadline = time.monotonic() + 20
        while (lab.hosts["lb2"].exec("test -e /root/first-count", check=False).returncode
               and time.monotonic() < deadline):
            time.sleep(0.05)  # ran though nothing asked for it yet
        assert ssh.run("lb2", first).stdout == "1\n"
        assert ssh.run("lb2", first).stdout == "2\n"  # asked again: runs again
        assert ssh.stats()["round_trips"] == {"lb2": 2}
        assert ssh.stats()["connections"] == {"lb2": 1}
    finally:
        ssh.close()


# -- atomic upload ------------------------------------------------------------------------------


def test_atomic_upload_with_failing_validation_leaves_the_old_file(
        lab: Lab, inv: Inventory, transport: SshTransport, tmp_path: Path) -> None:
    fresh(lab, "lb1")
    host = lab.hosts["lb1"]
    host.exec("mkdir -p /etc/demo && printf 'old\\n' > /etc/demo/app.conf && "
              "chmod 0640 /etc/demo/app.conf")

    def state() -> str:
        return host.exec("stat -c '%i %a %U:%G' /etc/demo/app.conf && "
                         "sha256sum < /etc/demo/app.conf && ls -A /etc/demo").stdout

    before = state()
    bad = FileContent("app.conf", "/etc/demo/app.conf", lambda ctx: b"bad\n", mode="0600",
                      validation="grep -q good {tmp}")
    with pytest.raises(StepFailed) as failed:
        run_step(inv, transport, tmp_path, {"lb1": (bad,)}, "run-bad")
    assert "lb1" in str(failed.value) and "t.step" in str(failed.value)
    assert state() == before  # same inode, mode, owner, content; no temp file in the listing
    assert ".hadeploy." not in before

    good = replace(bad, content_for=lambda ctx: b"good\n")
    journal, _ = run_step(inv, transport, tmp_path, {"lb1": (good,)}, "run-good")
    after = state()
    assert after.split()[0] != before.split()[0]  # renamed over: a new inode
    assert after.split()[1:3] == ["600", "root:root"]
    assert host.exec("cat /etc/demo/app.conf").stdout == "good\n"
    assert ".hadeploy." not in host.exec("ls -A /etc/demo").stdout
    backup = "/var/lib/hadeploy/backup/run-good/t.step/etc/demo/app.conf"
    assert host.exec(["cat", backup]).stdout == "old\n"
    rollback(inv, transport, tmp_path, journal)
    assert host.exec("cat /etc/demo/app.conf").stdout == "old\n"


# -- tree copy between hosts with different uids -----------------------------------------------

MAKE_TREE = r"""
set -e
mkdir -p /etc/svc/credential-keys /etc/svc/conf.d
printf 'PRIVATE KEY\n' > /etc/svc/credential-keys/0
printf '[DEFAULT]\nbind_host = 198.18.0.15\n' > /etc/svc/svc.conf
printf 'debug = true\n' > '/etc/svc/conf.d/a file with spaces.conf'
ln -s credential-keys/0 /etc/svc/current-key
ln -s ../svc.conf /etc/svc/conf.d/main.conf
chown -R svc:svc /etc/svc/credential-keys
chmod 0700 /etc/svc/credential-keys
chmod 0600 /etc/svc/credential-keys/0
chown root:svc /etc/svc/svc.conf /etc/svc
chmod 0640 /etc/svc/svc.conf
chmod 0750 /etc/svc
touch -h -d '2020-02-02 02:02:02' /etc/svc/credential-keys/0 /etc/svc/svc.conf /etc/svc/current-key
"""


def manifest(lab: Lab, host: str, path: str = "/etc/svc") -> str:
    return lab.hosts[host].exec(manifest_script(path)).stdout


def test_tree_copy_keeps_owners_by_name_modes_links_and_mtimes(
        lab: Lab, inv: Inventory, transport: SshTransport, tmp_path: Path) -> None:
    fresh(lab, "ctl1", "ctl2", "ctl3")
    ctl1, ctl2, ctl3 = (lab.hosts[h] for h in ("ctl1", "ctl2", "ctl3"))
    # Same name, different numbers; and on ctl2 uid 2001 belongs to someone else, so a copy
    # by number would hand the private key to the wrong user.
    ctl1.exec("groupadd -g 2001 svc && useradd -M -u 2001 -g 2001 svc")
    ctl2.exec("useradd -M -u 2001 impostor && groupadd -g 3002 svc && "
              "useradd -M -u 3002 -g 3002 svc")
    ctl1.exec(MAKE_TREE)
    ctl2.exec("mkdir -p /etc/svc && echo stale > /etc/svc/stale.conf")
    before_ctl2 = manifest(lab, "ctl2")

    op = TreeCopied("svc-tree", "ctl1", "/etc/svc")
    started = time.monotonic()
    journal, _ = run_step(inv, transport, tmp_path, {"ctl2": (op,)}, "run-tree")
    took = time.monotonic() - started
    source, copy = parse_manifest(manifest(lab, "ctl1")), parse_manifest(manifest(lab, "ctl2"))
    assert differences(source, copy) == []
    assert len(copy.entries) == 8
    key = copy.entries["credential-keys/0"]
    assert (key.owner, key.group, key.mode) == ("svc", "svc", "0600")
    assert ctl2.exec("stat -c '%u:%g' /etc/svc/credential-keys/0").stdout == "3002:3002\n"
    conf = copy.entries["svc.conf"]
    assert (conf.owner, conf.group, conf.mode) == ("root", "svc", "0640")
    assert copy.entries["."].mode == "0750" and copy.entries["."].group == "svc"
    assert copy.entries["current-key"].target == "credential-keys/0"  # still relative
    assert ctl2.exec("readlink /etc/svc/conf.d/main.conf").stdout == "../svc.conf\n"
    assert ctl2.exec("cat /etc/svc/current-key").stdout == "PRIVATE KEY\n"
    assert conf.mtime == source.entries["svc.conf"].mtime == 1580608922
    assert ctl2.exec("ls -A /etc | grep -c '^\\.hadeploy' || true").stdout.strip() == "0"
    backup = "/var/lib/hadeploy/backup/run-tree/t.step/etc/svc"
    assert ctl2.exec(["cat", f"{backup}/stale.conf"]).stdout == "stale\n"
    assert journal.step("t.step").hosts["ctl2"].state == "changed"
    print(f"tree copy ctl1 -> ctl2 (probe both, copy, verify): {took:.2f} s")

    again, events = run_step(inv, transport, tmp_path, {"ctl2": (op,)}, "run-tree-again")
    assert again.step("t.step").hosts["ctl2"].state == "ok"
    assert not [e for e in events if e.kind == "command"]

    rollback(inv, transport, tmp_path, journal)
    assert manifest(lab, "ctl2") == before_ctl2
    assert ctl2.exec(["test", "-e", backup], check=False).returncode == 1

    # A destination without the owner's name: refused before anything changes.
    ctl3.exec("mkdir -p /etc/svc && echo mine > /etc/svc/mine.conf")
    before_ctl3 = manifest(lab, "ctl3")
    with pytest.raises(StepFailed) as failed:
        run_step(inv, transport, tmp_path, {"ctl3": (TreeCopied("svc-tree", "ctl1", "/etc/svc"),)},
                 "run-tree-nouser")
    assert "do not exist here: user svc, group svc" in str(failed.value)
    assert manifest(lab, "ctl3") == before_ctl3
    assert ctl3.exec("ls -A /etc | grep -c '^\\.hadeploy' || true").stdout.strip() == "0"


# -- host keys ----------------------------------------------------------------------------------


def open_transport(inv: Inventory, ahead: bool, host: str) -> Transport:
    """The SSH transport; `ahead`: as a run makes it, `host` dialled and its handshake begun
    at once (app.make_transport), else connecting when first used."""
    return make_transport(inv, (host,)) if ahead else SshTransport(inv.ssh, list(inv.nodes))


AHEAD = pytest.mark.parametrize("ahead", [False, True], ids=["when-used", "dialled-ahead"])


def refusal(inv: Inventory, ahead: bool, host: str, error: type[Exception]) -> str:
    """The message of the `error` that stops the first command on `host` (it touches
    /root/should-not-exist, which must stay absent)."""
    ssh = open_transport(inv, ahead, host)
    try:
        with pytest.raises(error) as refused:
            ssh.run(host, "touch /root/should-not-exist")
    finally:
        ssh.close()
    return str(refused.value)


@AHEAD
def test_unknown_host_key_is_refused_by_default(lab: Lab, tmp_path: Path, ahead: bool) -> None:
    fresh(lab, "lb1")
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = load(inventory_variant(lab, tmp_path, known_hosts=known))
    assert inv.ssh.host_key_policy == "strict"
    message = refusal(inv, ahead, "lb1", HostKeyError)
    assert message.startswith("lb1: ") and "accept-new" in message and str(known) in message
    assert known.read_text() == ""
    assert lab.hosts["lb1"].exec("test -e /root/should-not-exist", check=False).returncode == 1


def test_accept_new_records_the_key_then_strict_trusts_it(lab: Lab, tmp_path: Path) -> None:
    fresh(lab, "lb1")
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = load(inventory_variant(lab, tmp_path, known_hosts=known, policy="accept-new"))
    ssh = SshTransport(inv.ssh, list(inv.nodes))
    try:
        assert ssh.run("lb1", "hostname").stdout == "lb1\n"
    finally:
        ssh.close()
    recorded = known.read_text()
    assert recorded.startswith(f"{lab.hosts['lb1'].address} ")
    offered = recorded.split()[2]
    assert offered in lab.known_hosts.read_text()  # the very key the lab generated
    strict = SshTransport(replace(inv.ssh, host_key_policy="strict"), list(inv.nodes))
    try:
        assert strict.run("lb1", "hostname").stdout == "lb1\n"
    finally:
        strict.close()


@AHEAD
def test_changed_host_key_is_refused_even_with_accept_new(lab: Lab, tmp_path: Path,
                                                          ahead: bool) -> None:
    fresh(lab, "lb1")
    known = tmp_path / "known_hosts"
    shutil.copy(lab.known_hosts, known)
    inv = load(inventory_variant(lab, tmp_path, known_hosts=known, policy="accept-new"))
    lab.hosts["lb1"].regenerate_host_keys()
    try:
        message = refusal(inv, ahead, "lb1", HostKeyError)
        assert message.startswith("lb1: ") and "man-in-the-middle" in message
        assert "CHANGED" in message and "ssh-keygen -R" in message
        assert known.read_text() == lab.known_hosts.read_text()  # nothing recorded
        assert lab.hosts["lb1"].exec("test -e /root/should-not-exist",
                                     check=False).returncode == 1
    finally:
        lab.hosts["lb1"].reset()  # the keys known_hosts lists, for the other tests


# -- a connection dropped in the middle of a real run ------------------------------------------


def _latest_journal(inventory: Path) -> Journal | None:
    runs = sorted((inventory.parent / ".hadeploy" / "runs").glob("*-lb-deploy.json"))
    return Journal.load(runs[-1]) if runs else None


def _state(journal: Journal | None, step: str, host: str) -> str | None:
    if journal is None:
        return None
    try:
        return journal.step(step).hosts[host].state
    except KeyError:
        return None


def test_dropped_connection_mid_run_is_reported_and_resumable(lab: Lab, tmp_path: Path) -> None:
    fresh(lab, *LBS)
    inventory = inventory_variant(lab, tmp_path)
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}
    deploy = subprocess.Popen(
        [sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts", str(inventory), "--yes"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and deploy.poll() is None:
            if _state(_latest_journal(inventory), "lb.haproxy-cfg", "lb2") in (
                    "running", "changed", "ok"):
                break
            time.sleep(0.02)
        else:
            pytest.fail("deploy-lb never reached lb.haproxy-cfg on lb2")
        # Kill the listener and every session inside lb2: the connection drops, and new ones
        # are refused.
        lab.hosts["lb2"].kill_sshd()
        out, err = deploy.communicate(timeout=300)
    finally:
        if deploy.poll() is None:
            deploy.kill()
            deploy.wait()
    print(out, err)
    assert deploy.returncode == 1, out + err
    assert "Traceback" not in out + err
    journal = _latest_journal(inventory)
    assert journal is not None and journal.status == "failed"
    failed_steps = [s.id for s in journal.steps if s.hosts["lb2"].state == "failed"]
    assert len(failed_steps) == 1, journal
    assert f"step {failed_steps[0]} failed on lb2" in out
    assert "lb2: " in out and "--resume" in out

    lab.hosts["lb2"].start_sshd()
    resumed = hadeploy("deploy-lb", "--hosts", str(inventory), "--resume", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    journal = _latest_journal(inventory)
    assert journal is not None and journal.status == "done"
    for step in journal.steps:
        assert {h.state for h in step.hosts.values()} <= {"changed", "ok"}, step
    assert lab.hosts["lb2"].exec("cat /run/haproxy.pid", check=False).returncode == 0


@AHEAD
def test_a_host_refusing_connections_is_named_with_the_reason(lab: Lab, inv: Inventory,
                                                              ahead: bool) -> None:
    fresh(lab, "lb3")
    lab.hosts["lb3"].kill_sshd()
    try:
        message = refusal(inv, ahead, "lb3", TransportError)
    finally:
        lab.hosts["lb3"].start_sshd()
    assert message.startswith(f"lb3: cannot connect to {lab.hosts['lb3'].address} port 22: "
                              "Connection refused. Nothing was run there.")
    assert lab.hosts["lb3"].exec("test -e /root/should-not-exist", check=False).returncode == 1


def test_transport_error_names_the_host_when_sshd_is_gone(lab: Lab, inv: Inventory,
                                                         transport: SshTransport) -> None:
    fresh(lab, "lb3")
    assert transport.run("lb3", "true").ok
    lab.hosts["lb3"].kill_sshd()
    try:
        with pytest.raises(TransportError) as lost:
            transport.run("lb3", "true")
        message = str(lost.value)
        assert message.startswith("lb3: ") and lab.hosts["lb3"].address in message
    finally:
        lab.hosts["lb3"].start_sshd()
    assert transport.run("lb3", "hostname").stdout == "lb3\n"  # reconnects


def test_a_connection_dropped_between_commands_fails_the_next_one(
        lab: Lab, inv: Inventory, transport: SshTransport) -> None:
    """A host that rebooted between two commands of a run is not silently reconnected to:
    what the run read there before may no longer hold, so the next command fails saying so
    (the step fails, resumable), and the one after that connects again."""
    fresh(lab, "lb3")
    assert transport.run("lb3", "true").ok
    lab.hosts["lb3"].reboot()
    conn = transport._connections["lb3"]
    deadline = time.monotonic() + 10
    while conn.is_connected and time.monotonic() < deadline:
        time.sleep(0.05)  # paramiko's reader thread sees the peer's end
    with pytest.raises(TransportError) as lost:
        transport.run("lb3", "touch /root/should-not-exist")
    assert str(lost.value).startswith(
        f"lb3: connection to {lab.hosts['lb3'].address} dropped since its last command")
    assert "resumable" in str(lost.value)
    assert lab.hosts["lb3"].exec("test -e /root/should-not-exist", check=False).returncode == 1
    assert transport.run("lb3", "hostname").stdout == "lb3\n"  # reconnects


@AHEAD
def test_connections_send_small_packets_at_once(lab: Lab, inv: Inventory, ahead: bool) -> None:
    """TCP_NODELAY on every connection's socket: set by the dialler before the handshake
    (whose small packets waited for delayed ACKs without it), or after it when paramiko
    dialled; `dial`'s socket has it from the start."""
    socket_ahead = dial(lab.hosts["lb2"].address, inv.ssh.port, inv.ssh.connect_timeout)
    try:
        assert socket_ahead.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        socket_ahead.close()
    ssh = open_transport(inv, ahead, "lb2")
    try:
        assert ssh.run("lb2", "true").ok
        assert isinstance(ssh, SshTransport)
        link = ssh._connections["lb2"].client.get_transport()
        assert link is not None and isinstance(link.sock, socket.socket)
        assert link.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        ssh.close()
