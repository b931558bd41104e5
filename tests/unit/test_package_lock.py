"""Another package manager run on a host (a dead workstation's apt-get, unattended-upgrades)
is recognised, named to the operator and waited for, bounded, instead of failing the install.

The shell parts run for real here against a lock file of the test's own, held with the same
fcntl lock dpkg takes; the operation's decisions are checked as data."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy.engine import Engine
from hadeploy.events import Event
from hadeploy.facts import Probe
from hadeploy.facts.system import DPKG_LOCKS, PM_LOCK_HOLDERS, packages_installed
from hadeploy.inventory.model import Node
from hadeploy.journal import Journal, now
from hadeploy.ops import PackagesInstalled
from hadeploy.ops.base import HostContext
from hadeploy.ops.packages import PM_BUSY_EXIT, undo_packages, wait_for_pm
from hadeploy.platforms import profile_for
from hadeploy.steps import Runbook, Step
from hadeploy.testing import FakeTransport

# Holds an fcntl write lock on argv[1] (as dpkg does) until stdin closes, then writes argv[2].
HOLDER = """
import fcntl, sys
f = open(sys.argv[1], "w")
fcntl.lockf(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
open(sys.argv[2], "w").write("released")
"""


@dataclass
class Holder:
    """A process holding the lock, released by closing its stdin."""

    proc: subprocess.Popen[str]
    released: Path

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    lock, released = tmp_path / "lock-frontend", tmp_path / "released"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock), str(released)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield Holder(proc, released)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def sh(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)


def test_the_holder_of_the_lock_is_named_with_its_command_line_on_one_line(
        holder: Holder, tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    out = sh(f"{PM_LOCK_HOLDERS}hadeploy_pm_holders {lock} {tmp_path / 'other'}").stdout
    pid, command = out.strip().split(" ", 1)
    assert int(pid) == holder.proc.pid
    # One line (the script's newlines are spaces), at most 200 characters.
    assert command.startswith(f"{sys.executable} -c  import fcntl, sys f = open(")
    assert len(command) <= 200


def test_a_process_that_only_has_the_file_open_holds_nothing(tmp_path: Path) -> None:
    lock = tmp_path / "lock-frontend"
    lock.write_text("")
    with lock.open():
        assert sh(f"{PM_LOCK_HOLDERS}hadeploy_pm_holders {lock}").stdout == ""


def test_the_install_waits_until_the_other_run_lets_go(holder: Holder, tmp_path: Path) -> None:
    # The script reads the holder's `released` file right after its wait: it exists only if
    # the wait lasted until the holder let go of the lock.
    threading.Timer(1.0, holder.release).start()
    run = sh(wait_for_pm(60, (str(tmp_path / "lock-frontend"),)) + f"cat {holder.released}\n")
    assert (run.returncode, run.stdout) == (0, "released")


def test_the_wait_is_bounded_and_says_who_holds_the_lock_and_what_to_do(
        holder: Holder, tmp_path: Path) -> None:
    run = sh(wait_for_pm(1, (str(tmp_path / "lock-frontend"),)) + "echo installed\n")
    assert run.returncode == PM_BUSY_EXIT and "installed" not in run.stdout
    assert "still busy after 1s" in run.stderr
    assert f"  pid {holder.proc.pid} {sys.executable}" in run.stderr
    assert "--resume" in run.stderr


def ctx(profile: str = "debian") -> HostContext:
    return HostContext(Node("lb1", IPv4Address("198.18.0.11")), profile_for(profile), "run-1",
                       "lb.packages")


HAPROXY = PackagesInstalled("packages", ("haproxy", "keepalived"))
APT = "/usr/bin/apt-get install -y haproxy"


def test_the_probe_reports_the_holders_beside_the_installed_packages() -> None:
    fact = packages_installed(profile_for("debian"), ("haproxy",), ("/etc/haproxy",))
    assert fact.command is not None and all(lock in fact.command for lock in DPKG_LOCKS)
    seen = fact.parse(Probe(f"haproxy\n@@absent /etc/haproxy\n@@pm-lock 812 {APT}\n"
                            "@@pm-lock 815 /usr/bin/dpkg --status-fd 66 --configure\n"))
    assert seen.installed == frozenset({"haproxy"}) and seen.absent == ("/etc/haproxy",)
    assert seen.busy == (f"812 {APT}", "815 /usr/bin/dpkg --status-fd 66 --configure")
    el = packages_installed(profile_for("el9"), ("haproxy",))
    assert el.command is not None and "/proc/locks" not in el.command
    assert el.parse(Probe("haproxy\n")).busy == ()


@pytest.mark.parametrize("listed", ["haproxy keepalived", "haproxy"], ids=["all", "one-missing"])
def test_the_probe_looks_for_the_locks_holders_only_when_a_package_is_missing(
        tmp_path: Path, listed: str) -> None:
    """A no-op's probe pays for no lock search: the holders matter only to an install. Run
    for real with a `dpkg-query` that lists `listed` and a `stat` that logs its calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "stat.log"
    bin_dir.mkdir()
    lines = "".join(f"{name} ii \n" for name in listed.split())
    (bin_dir / "dpkg-query").write_text(f"#!/bin/sh\nprintf '{lines}'\n")
    (bin_dir / "stat").write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec /usr/bin/stat "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    fact = packages_installed(profile_for("debian"), ("haproxy", "keepalived"))
    assert fact.command is not None
    run = subprocess.run(["sh", "-c", fact.command], capture_output=True, text=True, timeout=60,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert fact.parse(Probe(run.stdout)).installed == frozenset(listed.split())
    searched = log.read_text().split("\n")[:-1] if log.exists() else []
    assert searched == ([] if listed == "haproxy keepalived" else
                        [f"-c %i {lock}" for lock in DPKG_LOCKS])


def test_the_install_waits_after_listing_and_before_finishing_dpkg_and_names_the_holder() -> None:
    busy = HAPROXY.read(ctx(), Probe(f"keepalived\n@@pm-lock 812 {APT}\n"))
    (command,) = HAPROXY.apply(ctx(), busy)
    script = command.script
    assert (script.index('before=$(') < script.index("while holders=")
            < script.index("dpkg --audit") < script.index("apt-get install"))
    assert command.notice == ("waiting (at most 15 min) for the package manager run already "
                              f"under way to finish: pid 812 {APT}")
    (idle,) = HAPROXY.apply(ctx(), HAPROXY.read(ctx(), Probe("keepalived\n")))
    assert idle.notice == "" and "while holders=" in idle.script
    el9 = ctx("el9")
    (el,) = HAPROXY.apply(el9, HAPROXY.read(el9, Probe("keepalived\n")))
    assert "hadeploy_pm_holders" not in el.script


def test_the_rollback_waits_too() -> None:
    (command,) = undo_packages(ctx(), {"kind": "packages", "requested": ["keepalived"]})
    assert command.script.index("while holders=") < command.script.index("apt-get purge")


def test_the_engine_tells_the_operator_before_the_waiting_command_runs(tmp_path: Path) -> None:
    seen: list[Event] = []
    installed: list[str] = []
    transport = FakeTransport()
    # Before the install another run holds the lock; after it, the packages are there.
    transport.on_probe(lambda host, probe: (
        0, "haproxy\nkeepalived\n" if installed else f"@@pm-lock 812 {APT}\n"))

    def install(host: str, script: str, stdin: bytes | None) -> tuple[int, str, str]:
        installed.append(script)
        return 0, "@@hadeploy-new-packages\nhaproxy\n", ""

    transport.on(install)
    engine = Engine(transport, {"lb1": Node("lb1", IPv4Address("198.18.0.11"))}, "debian",
                    seen.append, stop=threading.Event())
    engine.apply_facts({"lb1": {"platform": "debian", "init": "sysv"}})
    journal = Journal(tmp_path / "run.json", "run-1", "lb", "deploy", "hosts.toml", "fp", now())
    engine.run(Runbook("lb", (Step("lb.packages", "Install", {"lb1": (HAPROXY,)}),)), journal)
    told = [(e.kind, e.host, e.data.get("text")) for e in seen if e.kind in ("notice", "command")]
    assert told == [("notice", "lb1", "waiting (at most 15 min) for the package manager run "
                                      f"already under way to finish: pid 812 {APT}"),
                    ("command", "lb1", None)]

