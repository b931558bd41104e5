"""End-to-end checks of the lab itself: the simulated hosts must behave like separate real
Debian servers reached over SSH, or every other end-to-end test proves nothing.

Needs root. Run: python -m pytest tests/lab/test_lab.py -m lab
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hadeploy.errors import CommandFailed
from lab import Lab, LabHost
from lab.errors import LabError
from lab.network import SUBNET, WORKSTATION_IF

pytestmark = pytest.mark.lab

HOSTS = ("lb1", "lb2", "lb3", "ctl1", "ctl2", "ctl3")


def ssh(
    lab: Lab, host: str, command: str, *options: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` on `host` with the real ssh client and only the lab's ssh_config."""
    argv = ["ssh", "-F", str(lab.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=3",
            *options]
    if user is not None:
        argv += ["-l", user]
    return subprocess.run([*argv, host, command], capture_output=True, text=True, timeout=60)


def installed(host: LabHost, package: str) -> bool:
    """dpkg's own answer on the host: is `package` installed?"""
    result = host.exec(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return result.returncode == 0 and result.stdout.endswith(" installed")


def test_addresses_and_ssh_files(lab: Lab) -> None:
    assert [h.address for h in lab.hosts.values()] == [f"{SUBNET}.{i}" for i in range(11, 17)]
    assert stat.S_IMODE(lab.identity_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(lab.identity_file.with_suffix(".pub").stat().st_mode) == 0o600
    known = lab.known_hosts.read_text()
    config = lab.ssh_config.read_text()
    for host in lab.hosts.values():
        assert f"{host.name},{host.address} ssh-ed25519 " in known
        assert f"Host {host.name}\n    HostName {host.address}\n    User hadeploy\n" in config
    assert "StrictHostKeyChecking yes" in config and "IdentitiesOnly yes" in config


def test_ssh_as_hadeploy_with_passwordless_sudo_and_as_root(lab: Lab) -> None:
    for name in HOSTS:
        result = ssh(lab, name, "hostname; id -un; sudo -n true && echo sudo-ok")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [name, "hadeploy", "sudo-ok"]
    root = ssh(lab, "ctl1", 'id -un; echo "$PATH"; cat ~/.bashrc', user="root")
    assert root.returncode == 0, root.stderr
    assert root.stdout.startswith("root\n")
    assert "pyenv" not in root.stdout  # Debian's stock dotfiles, not the workstation's


def test_hostnames_differ(lab: Lab) -> None:
    names = [h.exec("hostname").stdout.strip() for h in lab.hosts.values()]
    assert names == list(HOSTS)


def test_files_are_private_to_each_host(lab: Lab) -> None:
    token = secrets.token_hex(8)
    lb1, lb2 = lab.hosts["lb1"], lab.hosts["lb2"]
    paths = [f"/etc/lab-{token}", f"/var/tmp/lab-{token}", f"/tmp/lab-{token}",
             f"/root/lab-{token}", f"/usr/local/lab-{token}"]
    lb1.exec(["touch", *paths])
    try:
        assert lb1.exec(["ls", *paths]).returncode == 0
        for path in paths:
            assert lb2.exec(["test", "-e", path], check=False).returncode == 1, path
            assert not Path(path).exists(), f"{path} leaked onto the workstation"
    finally:
        lb1.exec(["rm", "-f", *paths])


def test_hosts_are_bare_and_apt_install_works_offline_on_one_host_only(lab: Lab) -> None:
    status = Path("/var/lib/dpkg/status")
    workstation_before = hashlib.sha256(status.read_bytes()).hexdigest()
    lb3 = lab.hosts["lb3"]
    for host in lab.hosts.values():
        host.reset()  # other test modules share the session lab
    for host in lab.hosts.values():
        assert not installed(host, "haproxy") and not installed(host, "keepalived"), host.name
        routes = host.exec(["ip", "-4", "route"]).stdout
        assert "default" not in routes and f"{SUBNET}.0/24 dev eth0" in routes
    try:
        lb3.exec("apt-get install -y haproxy keepalived", timeout=180)
        assert installed(lb3, "haproxy") and installed(lb3, "keepalived")
        # Like a real server, the package's start worked, and only this host runs it.
        assert lb3.exec("pidof haproxy", check=False).returncode == 0
        for host in lab.hosts.values():
            if host is not lb3:
                assert not installed(host, "haproxy"), host.name
                assert host.exec("pidof haproxy", check=False).returncode == 1, host.name
        assert hashlib.sha256(status.read_bytes()).hexdigest() == workstation_before
    finally:
        lb3.reset()
    assert not installed(lb3, "haproxy")


def test_processes_of_one_host_are_invisible_to_the_others(lab: Lab) -> None:
    marker = f"{secrets.randbelow(10**6) + 10**6}"
    ctl2, ctl3 = lab.hosts["ctl2"], lab.hosts["ctl3"]
    ctl2.exec(f"setsid sleep {marker} </dev/null >/dev/null 2>&1 &")
    try:
        pattern = f"^sleep {marker}$"
        assert ctl2.exec(["pgrep", "-f", pattern], check=False).returncode == 0
        assert ctl3.exec(["pgrep", "-f", pattern], check=False).returncode == 1
        assert ctl3.exec("cat /proc/1/comm").stdout.strip() == "tini"
    finally:
        ctl2.exec(["pkill", "-f", f"^sleep {marker}$"], check=False)  # inside ctl2's PID ns only


def test_net_sysctls_are_per_host_and_the_rest_is_read_only(lab: Lab) -> None:
    knob = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")
    workstation = knob.read_text()
    lb1, lb2 = lab.hosts["lb1"], lab.hosts["lb2"]
    try:
        lb1.exec("sysctl -w net.ipv4.ip_nonlocal_bind=1")
        assert lb1.exec("sysctl -n net.ipv4.ip_nonlocal_bind").stdout.strip() == "1"
        assert lb2.exec("sysctl -n net.ipv4.ip_nonlocal_bind").stdout.strip() == "0"
        assert knob.read_text() == workstation
        swappiness = Path("/proc/sys/vm/swappiness").read_text()
        denied = lb1.exec("sysctl -w vm.swappiness=13", check=False)
        assert denied.returncode != 0
        assert Path("/proc/sys/vm/swappiness").read_text() == swappiness
    finally:
        lb1.exec("sysctl -w net.ipv4.ip_nonlocal_bind=0")


def test_multicast_crosses_the_bridge(lab: Lab) -> None:
    lb1, lb2 = lab.hosts["lb1"].address, lab.hosts["lb2"].address
    receiver = (
        "import socket,struct\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('224.0.0.18',11112))\n"
        "s.setsockopt(socket.IPPROTO_IP,socket.IP_ADD_MEMBERSHIP,"
        f"struct.pack('4s4s',socket.inet_aton('224.0.0.18'),socket.inet_aton('{lb2}')))\n"
        "s.settimeout(5)\n"
        "print(s.recvfrom(100))\n"
    )
    sender = (
        "import socket,time\n"
        "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,1)\n"
        f"s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton('{lb1}'))\n"
        "for _ in range(15):\n"
        "    s.sendto(b'vrrp-ish',('224.0.0.18',11112)); time.sleep(0.1)\n"
    )
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    listen = threading.Thread(
        target=lambda: results.update(r=lab.hosts["lb2"].exec(["python3", "-c", receiver],
                                                              check=False)))
    listen.start()
    time.sleep(0.3)
    lab.hosts["lb1"].exec(["python3", "-c", sender])
    listen.join(10)
    assert results["r"].returncode == 0, results["r"].stderr
    assert "vrrp-ish" in results["r"].stdout and lb1 in results["r"].stdout


def test_stop_and_start_sshd(lab: Lab) -> None:
    lb2 = lab.hosts["lb2"]
    lb2.stop_sshd()
    try:
        assert not lb2.sshd_running()
        refused = ssh(lab, "lb2", "true")
        assert refused.returncode == 255 and "refused" in refused.stderr
    finally:
        lb2.start_sshd()
    assert lb2.sshd_running()
    assert ssh(lab, "lb2", "true").returncode == 0


def test_link_down_and_up(lab: Lab) -> None:
    ctl1 = lab.hosts["ctl1"]
    ctl1.link_down()
    try:
        assert ssh(lab, "ctl1", "true", "-o", "ConnectTimeout=1").returncode == 255
    finally:
        ctl1.link_up()
    assert ssh(lab, "ctl1", "true").returncode == 0


def test_changed_host_key_is_refused_until_reset(lab: Lab) -> None:
    ctl3 = lab.hosts["ctl3"]
    ctl3.regenerate_host_keys()
    changed = ssh(lab, "ctl3", "true", "-o", "StrictHostKeyChecking=yes")
    assert changed.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
    ctl3.reset()
    assert ssh(lab, "ctl3", "true").returncode == 0


def test_reset_gives_a_fresh_host(lab: Lab) -> None:
    """(How long a reset takes is the benchmark's business, never a test's.)"""
    ctl2 = lab.hosts["ctl2"]
    ctl2.exec("echo dirty >/etc/dirty; useradd someone; mkdir -p /srv/data")
    ctl2.reset()
    assert ctl2.exec("test -e /etc/dirty || test -e /srv/data", check=False).returncode == 1
    assert ctl2.exec("id someone", check=False).returncode == 1
    assert ctl2.exec("hostname").stdout.strip() == "ctl2"
    assert ssh(lab, "ctl2", "sudo -n true").returncode == 0


def test_reboot_keeps_the_disk(lab: Lab) -> None:
    lb1 = lab.hosts["lb1"]
    old_pid = lb1.pid
    lb1.exec("echo kept >/etc/kept; setsid sleep 777 </dev/null >/dev/null 2>&1 &")
    try:
        lb1.reboot()
        assert lb1.pid != old_pid
        assert lb1.exec("cat /etc/kept").stdout == "kept\n"
        assert lb1.exec(["pgrep", "-f", "^sleep 777$"], check=False).returncode == 1
        assert lb1.sshd_running() and ssh(lab, "lb1", "true").returncode == 0
    finally:
        lb1.exec("rm -f /etc/kept")


def test_exec_failure_and_load(lab: Lab) -> None:
    with pytest.raises(CommandFailed) as caught:
        lab.hosts["lb1"].exec("echo oops >&2; exit 3")
    assert isinstance(caught.value, LabError)
    assert caught.value.exited == 3 and "oops" in caught.value.stderr
    again = Lab.load(lab.state_dir)
    assert again.is_up()
    assert {n: h.pid for n, h in again.hosts.items()} == {n: h.pid for n, h in lab.hosts.items()}
    assert again.hosts["ctl1"].exec("hostname").stdout.strip() == "ctl1"


def _lab_traces(state_dir: Path) -> list[str]:
    """Processes, mounts or interfaces of a lab still on the machine."""
    traces = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(state_dir) in cmdline:
            traces.append(f"process {entry.name}: {cmdline}")
    traces += [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if "hadeploy" in line or str(state_dir) in line]
    if Path(f"/sys/class/net/{WORKSTATION_IF}").exists():
        traces.append(f"interface {WORKSTATION_IF}")
    return traces


def _namespaces_of(pid: int) -> set[tuple[str, int]]:
    return {(ns, Path(f"/proc/{pid}/ns/{ns}").stat().st_ino) for ns in ("net", "mnt", "pid")}


def _namespaces_in_use() -> set[tuple[str, int]]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found |= _namespaces_of(int(entry.name))
            except OSError:
                continue
    return found


def test_zz_down_leaves_nothing_behind(lab: Lab) -> None:
    """Runs last in this file; brings the lab back up for any later test using it."""
    pids = [h.pid for h in lab.hosts.values()]
    namespaces = set().union(*(_namespaces_of(pid) for pid in pids))
    root_namespaces = _namespaces_of(os.getpid())
    try:
        lab.down()
        lab.down()  # idempotent
        assert not any(Path(f"/proc/{pid}").exists() for pid in pids)
        assert not (namespaces - root_namespaces) & _namespaces_in_use()
        assert _lab_traces(lab.state_dir) == []
        assert not (lab.state_dir / "lab.json").exists()
        assert "hadeploy" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                                text=True, check=True).stdout
        with pytest.raises(LabError):
            lab.hosts["lb1"].exec("true")
    finally:
        # Whatever failed above, the tests after this one get a working lab.
        lab.down()
        lab.rebuild()
    assert lab.is_up()
