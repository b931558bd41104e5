"""Facts: each a read-only command and a pure parser. Parsers are fed host output as data;
the load balancers' preflight and verification judge parsed facts (inputs + faked facts ->
problem or None), and the facts `verify` shares with the deploy stay one and the same."""

from __future__ import annotations

import subprocess

import pytest

from hadeploy.facts import Fact, Probe
from hadeploy.facts.network import (
    Listening,
    holds_vip,
    interface_present,
    listening_sockets,
    vip_held,
    vip_use,
)
from hadeploy.facts.system import (
    PackagesSeen,
    ServiceState,
    daemon_state,
    detected_platform,
    packages_installed,
    service_state,
    sysctl_value,
)
from hadeploy.facts.trees import manifest_script, parse_manifest
from hadeploy.inventory import Inventory
from hadeploy.ops import AnyOp, HostContext, Requirement
from hadeploy.platforms import DETECT_PROBE, profile_for, running_probe
from hadeploy.runbook import build_lb_runbook
from hadeploy.runbook.lb import HAPROXY_PIDFILES, KEEPALIVED_PIDFILES
from hadeploy.verify import balancer_facts, balancer_script

SS_P = (
    'LISTEN 0 4096 0.0.0.0:5000 0.0.0.0:* users:(("keystone-all",pid=11,fd=3))\n'
    'LISTEN 0 4096 192.168.1.221:9292 0.0.0.0:* users:(("glance-api",pid=12,fd=4))\n'
    'LISTEN 0 4096 192.168.1.220:8774 0.0.0.0:* users:(("haproxy",pid=13,fd=5))\n'
    "LISTEN 0 4096 [::]:35357 [::]:*\n"
    "garbage\n"
)


def read(fact: Fact[object], stdout: str, exited: int = 0) -> object:
    return fact.parse(Probe(stdout, exited))


# -- parsers, as data ----------------------------------------------------------------------------


@pytest.mark.parametrize(("fact", "stdout", "value"), [
    (vip_held("10.0.0.9"), "held\n", True),
    (vip_held("10.0.0.9"), "free\n", False),
    (vip_use("10.0.0.9"), "answers\n", "answers"),
    (interface_present("eth0"), "present\n", True),
    (interface_present("eth0"), "missing\n", False),
    (daemon_state("haproxy", ("/run/haproxy.pid",), "sysv"), "running\n", "running"),
    (daemon_state("haproxy", (), "systemd"), "", ""),
    (service_state(profile_for("debian"), "haproxy", ()), "enabled\nstopped\n",
     ServiceState(enabled=True, running=False)),
    (service_state(profile_for("el6"), "haproxy", ()), "disabled\nrunning\n",
     ServiceState(enabled=False, running=True)),
    (sysctl_value("net.ipv4.ip_local_port_range"), "32768\t60999\n", "32768\t60999"),
    (detected_platform(), "id=rocky\nlike=rhel centos fedora\nversion=9.3\ninit=systemd\n", "el9"),
    (detected_platform(), "", ""),
    (packages_installed(profile_for("debian"), ("haproxy", "keepalived"), ("/etc/a b", "/etc/c")),
     "haproxy\n@@absent /etc/a b\n", PackagesSeen(frozenset({"haproxy"}), ("/etc/a b",))),
    (listening_sockets(processes=True), SS_P, (
        Listening("0.0.0.0:5000", "0.0.0.0", 5000, 'users:(("keystone-all",pid=11,fd=3))'),
        Listening("192.168.1.221:9292", "192.168.1.221", 9292,
                  'users:(("glance-api",pid=12,fd=4))'),
        Listening("192.168.1.220:8774", "192.168.1.220", 8774, 'users:(("haproxy",pid=13,fd=5))'),
        Listening("[::]:35357", "::", 35357),
    )),
])
def test_a_fact_parses_host_output(fact: Fact[object], stdout: str, value: object) -> None:
    assert read(fact, stdout) == value


def test_the_commands_are_the_probes_the_hosts_have_always_run() -> None:
    assert vip_held("10.0.0.9").command == (
        "if ip -o addr show | grep -q ' 10.0.0.9/'; then echo held; else echo free; fi")
    assert vip_use("10.0.0.9").command == (
        "if ip -o addr show | grep -q ' 10.0.0.9/'; then echo held; "
        "elif command -v ping >/dev/null && ping -c 1 -W 1 10.0.0.9 >/dev/null 2>&1; "
        "then echo answers; else echo free; fi")
    assert listening_sockets(processes=True).command == "ss -Hltnp 2>/dev/null || true"
    assert listening_sockets().command == "ss -Hltn 2>/dev/null"
    assert detected_platform().command == DETECT_PROBE
    assert daemon_state("haproxy", HAPROXY_PIDFILES, "sysv").command == running_probe(
        "haproxy", HAPROXY_PIDFILES, "sysv")


def test_the_vip_holder_test_runs_under_sh() -> None:
    # `ip` may be missing where the tests run: only the shell around it is checked here.
    fake_ip = "ip() { echo '2: eth0    inet 10.0.0.9/24 brd 10.0.0.255'; }"
    script = f"{fake_ip}; {holds_vip('10.0.0.9')}"
    assert subprocess.run(["/bin/sh", "-c", script], check=False).returncode == 0
    other = script.replace("10.0.0.9/24", "10.0.0.19/24")
    assert subprocess.run(["/bin/sh", "-c", other], check=False).returncode == 1


def test_a_tree_manifest_starts_with_its_tagged_state_line() -> None:
    assert parse_manifest("@@tree absent\n").state == "absent"
    assert parse_manifest("@@tree notdir\n").state == "notdir"
    with pytest.raises(ValueError, match="no tree manifest"):
        parse_manifest("@@tree\n")
    with pytest.raises(ValueError, match="no tree manifest"):
        parse_manifest("@@treetop dir\n")
    assert '"@@tree dir"' in manifest_script("/etc/x")


def test_known_and_raw_facts() -> None:
    known = Fact.known(("a", "b"))
    assert known.command is None and known.parse(Probe("")) == ("a", "b")
    raw = Fact.raw("cat /x")
    assert raw.command == "cat /x" and raw.parse(Probe("42\n", 3)) == Probe("42\n", 3)


# -- the load balancers' preflight and verification judge parsed facts ------------------------


def requirement(inv: Inventory, step: str, op_id: str) -> tuple[Requirement[object], HostContext]:
    book = build_lb_runbook(inv)
    node = inv.balancers[0]
    (op,) = [o for o in next(s for s in book.steps if s.id == step).ops[node.name]
             if o.op_id == op_id]
    assert isinstance(op, Requirement)
    return op, HostContext(node, profile_for("el7"), "run", step)


def judged(op: AnyOp, ctx: HostContext, stdout: str) -> str:
    seen = op.read(ctx, Probe(stdout))
    return "" if op.done(ctx, seen) else op.preview(ctx, seen)


def test_ports_free_names_the_api_that_holds_a_vip_port_on_all_addresses(
        colocated: Inventory) -> None:
    op, ctx = requirement(colocated, "lb.preflight", "ports-free")
    assert op.probe(ctx) == "ss -Hltnp 2>/dev/null || true"
    problem = judged(op, ctx, SS_P)
    # keystone on 0.0.0.0:5000; not [::]:35357 (no VIP port on modern, whose Keystone has
    # one port), not glance on its own address, not haproxy
    assert problem == (
        '  NOT MET: 0.0.0.0:5000 (users:(("keystone-all",pid=11,fd=3))) '
        "holds a port haproxy needs on the VIP; bind that API to the node's address "
        "(192.168.1.221) first\n")
    assert judged(op, ctx, SS_P.splitlines()[1] + "\n") == ""


def test_listening_names_the_frontend_ports_nobody_listens_on(colocated: Inventory) -> None:
    op, ctx = requirement(colocated, "lb.verify", "listening")
    ports = [80, 3306, 5000, 5672, 6080, 8000, 8003, 8004, 8080, 8774, 8775, 8776, 8777,
             9191, 9292, 9696, 35357]
    everything = "".join(f"LISTEN 0 4096 192.168.1.220:{p} 0.0.0.0:*\n" for p in ports)
    assert judged(op, ctx, everything) == ""
    assert judged(op, ctx, everything.replace(":9292 ", ":19292 ")) == (
        "  NOT MET: haproxy does not listen on 192.168.1.220 port(s) 9292\n")


def test_vip_free_fails_only_when_another_machine_answers(example: Inventory) -> None:
    op, ctx = requirement(example, "lb.preflight", "vip-free")
    assert judged(op, ctx, "free\n") == "" and judged(op, ctx, "held\n") == ""
    assert "another machine uses this address" in judged(op, ctx, "answers\n")


def test_platform_and_interface_checks(example: Inventory) -> None:
    platform, ctx = requirement(example, "lb.preflight", "platform")
    assert "runs el9 but deployment.platform is el6" in judged(
        platform, ctx, "id=rocky\nversion=9.1\ninit=systemd\n")
    assert judged(platform, ctx, "id=centos\nversion=6.10\ninit=sysv\n") == ""
    assert "cannot tell the platform" in judged(platform, ctx, "")
    iface, ctx = requirement(example, "lb.preflight", "interface")
    assert judged(iface, ctx, "present\n") == ""
    assert "does not exist on mesa-lb-01" in judged(iface, ctx, "missing\n")


def test_the_serial_restart_and_verify_read_the_same_vip_holder(example: Inventory) -> None:
    vip = str(example.vip.address)
    (services,) = [s for s in build_lb_runbook(example).steps if s.id == "lb.services"]
    assert services.last_probe == f"{holds_vip(vip)} && echo last || true"
    held, keepalived, haproxy = balancer_facts(example)
    assert held.command == vip_held(vip).command
    assert keepalived.command == running_probe("keepalived", KEEPALIVED_PIDFILES, "sysv")
    assert haproxy.command == running_probe("haproxy", HAPROXY_PIDFILES, "sysv")
    script = balancer_script(example)
    assert script.startswith(f"echo '@@hadeploy-verify vip'; {held.command}\n"
                             f"echo '@@hadeploy-verify keepalived'; {keepalived.command}\n")

