"""A haproxy.cfg change on live balancers, under load: `deploy-lb` reloads haproxy on every
balancer and not one request through the VIP fails (a new TCP connection per request); a
reload that fails fails the step with haproxy's message, the old haproxy still serving."""

from __future__ import annotations

import functools
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab import Lab
from lab.inventory import LAB_VIP
from tests.lab.helpers import (
    LBS,
    clean_deploy,
    hadeploy,
    journal,
    one_holder,
    pidfile_pid,
    wait_for,
)

pytestmark = pytest.mark.lab

HAPROXY_PID = "/run/haproxy.pid"
HAPROXY_CFG = "/etc/haproxy/haproxy.cfg"
PORT = 5000  # a stand-in backend behind the VIP
MAX_SECONDS = 60.0  # bounds the load loop (and the deploy it must outlast)
MAX_REQUESTS = 30_000


CLIENTS = 4  # threads, so that thousands of requests fall within one deploy-lb


@dataclass
class Load:
    """Bounded loops of GETs through the VIP, each on a new TCP connection."""

    sent: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def one(self) -> None:
        """One request; a refused, reset or timed-out connection or a non-200 is a failure."""
        with self.lock:
            self.sent += 1
        try:
            with socket.create_connection((LAB_VIP, PORT), timeout=5) as conn:
                conn.sendall(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n")
                reply = b""
                while chunk := conn.recv(4096):
                    reply += chunk
            if not reply.startswith(b"HTTP/1.0 200") and not reply.startswith(b"HTTP/1.1 200"):
                self.failures.append(f"reply {reply[:40]!r}")
        except OSError as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")

    def run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while (not self.stop.is_set() and self.sent < MAX_REQUESTS
               and time.monotonic() < deadline):
            self.one()


def started_at(lab: Lab, host: str, pid: int) -> float:
    """When process `pid` started on `host`, in seconds since the epoch."""
    out = lab.hosts[host].exec(
        ["sh", "-c", f"awk '/^btime/ {{print $2}}' /proc/stat; getconf CLK_TCK; "
         f"cut -d')' -f2 /proc/{pid}/stat"]).stdout.split("\n")
    btime, ticks, rest = float(out[0]), float(out[1]), out[2].split()
    return btime + float(rest[19]) / ticks  # field 22 of stat: start time in clock ticks


def test_a_haproxy_cfg_change_reloads_without_a_failed_request(
        lab: Lab, tmp_path: Path) -> None:
    inventory = clean_deploy(lab, tmp_path, backends=(PORT,))
    before = {h: pidfile_pid(lab, h, HAPROXY_PID) for h in LBS}
    assert all(before.values()), before
    text = inventory.read_text()
    assert 'check_inter = "2s"\n' in text
    inventory.write_text(text.replace('check_inter = "2s"\n', 'check_inter = "3s"\n'))

    plan = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run", timeout=120)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "haproxy: reload" in plan.stdout and "haproxy: restart" not in plan.stdout, plan.stdout

    load = Load()
    warm = Load()
    warm.one()
    assert not warm.failures, warm.failures  # the VIP serves before the change
    threads = [threading.Thread(target=load.run, daemon=True) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
        time.sleep(1)  # the old processes finish what they hold
        outlasted = all(thread.is_alive() for thread in threads)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=MAX_SECONDS + 10)
    print(f"\nrequests through the VIP while deploy-lb reloaded haproxy: {load.sent} sent, "
          f"{len(load.failures)} failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert outlasted, "the load loop ended before deploy-lb did: it proves nothing"
    for host in LBS:
        cfg = lab.hosts[host].exec(["cat", HAPROXY_CFG]).stdout
        assert " check inter 3s" in cfg and " check inter 2s" not in cfg, host
        pid = pidfile_pid(lab, host, HAPROXY_PID)
        assert pid and pid != before[host], (host, before[host], pid)
        assert lab.hosts[host].exec(["kill", "-0", str(pid)], check=False).returncode == 0
        # the process serving now read the new file: it started after the file was written
        written = float(lab.hosts[host].exec(["stat", "-c", "%Y", HAPROXY_CFG]).stdout)
        assert started_at(lab, host, pid) >= written - 1, host
    reloaded = {host: [c["record"] for c in entry["changes"] if c.get("record")]
                for step in journal(inventory)["steps"] if step["id"] == "lb.services"
                for host, entry in step["hosts"].items()}
    assert {h: [r.get("verb") for r in records if r["service"] == "haproxy"]
            for h, records in reloaded.items()} == {h: ["reload"] for h in LBS}
    assert one_holder(lab) == ["lb1"]
    assert load.sent > 1000, f"only {load.sent} requests: too few to prove anything"
    assert not load.failures, (f"{len(load.failures)} of {load.sent} requests failed: "
                               f"{sorted(set(load.failures))[:5]}")


MONITOR_PORT = 9300


def test_a_failed_reload_fails_the_step_and_the_old_haproxy_serves_on(
        lab: Lab, tmp_path: Path) -> None:
    """A config `haproxy -c` accepts but haproxy cannot apply (its new monitor port is taken
    on every balancer): the reload fails, the run stops with haproxy's own alert, and every
    balancer's old haproxy, never told to stop, goes on serving the VIP."""
    inventory = clean_deploy(lab, tmp_path, backends=(PORT,))
    before = {h: pidfile_pid(lab, h, HAPROXY_PID) for h in LBS}
    blockers = {}
    for host in LBS:
        blockers[host] = int(lab.hosts[host].exec(
            ["sh", "-c", f"nohup python3 -m http.server {MONITOR_PORT} --bind 0.0.0.0 "
             ">/dev/null 2>&1 & echo $!"]).stdout)
    try:
        probe = f"ss -Hltn 'sport = :{MONITOR_PORT}'"

        def listening(host: str) -> str:
            return lab.hosts[host].exec(["sh", "-c", probe]).stdout.strip()

        for host in LBS:  # the blocker listens before haproxy tries
            wait_for(functools.partial(listening, host), f"the blocker on {host}")
        inventory.write_text(inventory.read_text()
                             + f"\n[haproxy.monitor]\nport = {MONITOR_PORT}\n")
        started = time.monotonic()
        run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
        out = run.stdout + run.stderr
        print(f"\ndeploy-lb with an unbindable port failed in {time.monotonic() - started:.1f}s:\n"
              + "\n".join(line for line in out.splitlines() if "ALERT" in line or "reload" in line))
        assert run.returncode == 1, out
        assert "step lb.services failed on" in out, out
        assert "cannot bind socket" in out, out  # haproxy's own alert
        assert "haproxy did not reload; the running one keeps its configuration" in out, out
        for host in LBS:
            assert pidfile_pid(lab, host, HAPROXY_PID) == before[host], host
            assert lab.hosts[host].exec(["kill", "-0", str(before[host])],
                                        check=False).returncode == 0, host
        load = Load()
        for _ in range(50):
            load.one()
        assert not load.failures, load.failures
        assert one_holder(lab) == ["lb1"]
    finally:
        for host, pid in blockers.items():
            lab.hosts[host].exec(["kill", str(pid)], check=False)
