"""Operations: pure decisions from probe output, and their shell scripts run with /bin/sh.

The scripts run here in a temp directory with the local coreutils, which is what the
hosts run too (Debian and EL both ship GNU coreutils): atomic writes, undo of files,
file probes, pid-file checks and the package-diff that records what an install added.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy import framing, ops
from hadeploy.catalog import load_catalog
from hadeploy.facts.files import FileState, file_probe, parse_file_probe
from hadeploy.facts.system import PackagesSeen, ServiceState
from hadeploy.facts.trees import Manifest
from hadeploy.inventory.model import Inventory, Node
from hadeploy.ops import (
    UNDO,
    AnyOp,
    Command,
    EndpointsOnVip,
    Fact,
    FileContent,
    FileEdit,
    HostContext,
    PackagesInstalled,
    Probe,
    Requirement,
    ServiceRunning,
    SysctlValue,
    TreeCopied,
)
from hadeploy.ops.base import BACKUP_ROOT
from hadeploy.ops.files import atomic_write, undo_file, unified_diff
from hadeploy.ops.packages import (
    NEW_MARK,
    configure_again,
    purge_keeping_mounted_data,
    undo_packages,
)
from hadeploy.ops.retire import ServiceRetired
from hadeploy.ops.services import (
    pids_in,
    restart_and_wait,
    stop_and_wait,
    undo_service,
    wait_running,
)
from hadeploy.ops.sysctl import undo_sysctl
from hadeploy.ops.trees import TreesSeen
from hadeploy.platforms import Init, Profile, profile_for, running_probe
from hadeploy.quoting import q
from hadeploy.runbook.lb import build_lb_runbook

USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def sh(script: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", script], input=stdin.decode(), capture_output=True,
                          text=True, timeout=30, check=False)


def ctx(profile: Profile | None = None, changed: frozenset[str] = frozenset(),
        detail: bool = False) -> HostContext:
    return HostContext(Node("lb1", IPv4Address("198.18.0.10")), profile or profile_for("debian"),
                       "run1", "lb.step", {"PW": "s3cret-pass"}, changed, detail)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".hadeploy"))


# -- atomic write and its undo, with /bin/sh --------------------------------------------------


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    directory = tmp_path / "etc dir" / "hap'roxy"  # quoting matters: spaces and a quote
    directory.mkdir(parents=True)
    return directory


def write(target: Path, content: bytes, backup: Path, validate: str | None = None,
          mode: str = "0640") -> subprocess.CompletedProcess[str]:
    return sh(atomic_write(str(target), USER, GROUP, mode, str(backup), validate,
                           content=content), content)


def test_atomic_write_creates_a_new_file_with_mode_and_no_backup(etc: Path) -> None:
    target, backup = etc / "haproxy.cfg", etc.parent / "backup dir" / "haproxy.cfg"
    result = write(target, b"global\n", backup)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == b"global\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert not backup.exists()
    assert leftovers(etc) == []


def test_atomic_write_replaces_and_keeps_the_first_backup(etc: Path) -> None:
    target, backup = etc / "haproxy.cfg", etc.parent / "back up" / "run" / "haproxy.cfg"
    target.write_bytes(b"original\n")
    assert write(target, b"second\n", backup).returncode == 0
    assert write(target, b"third\n", backup).returncode == 0
    assert target.read_bytes() == b"third\n"
    assert backup.read_bytes() == b"original\n"  # what rollback must restore
    assert backup.parent.stat().st_mode & 0o777 == 0o700
    assert leftovers(etc) == []


@pytest.mark.parametrize("arrived", [b"", b"global\n", b"global\n    daemoN\n"],
                         ids=["nothing", "half", "same-size-other-bytes"])
def test_an_upload_cut_off_never_replaces_the_file(etc: Path, arrived: bytes) -> None:
    """A workstation that dies mid-upload closes stdin early: what arrived is not installed
    (the kill-point test met an empty sysctl drop-in installed that way)."""
    target, backup = etc / "haproxy.cfg", etc.parent / "backup" / "haproxy.cfg"
    target.write_bytes(b"old\n")
    script = atomic_write(str(target), USER, GROUP, "0640", str(backup), None,
                          content=b"global\n    daemon\n")
    result = sh(script, arrived)
    assert result.returncode == 1
    assert result.stderr == (f"the upload of {target} arrived incomplete; the file was not "
                             "replaced\n")
    assert target.read_bytes() == b"old\n"
    assert not backup.exists()
    assert leftovers(etc) == []


def test_a_hang_up_mid_upload_leaves_no_temp_file_and_a_retry_clears_a_dead_runs(
        etc: Path) -> None:
    """sshd hangs up on a dead workstation's command: the temp file goes with it. A temp left
    by a process that could not clean up (SIGKILL) is the retry's own name: replaced."""
    target, backup = etc / "haproxy.cfg", etc.parent / "backup" / "haproxy.cfg"
    target.write_bytes(b"old\n")
    script = atomic_write(str(target), USER, GROUP, "0640", str(backup), None,
                          content=b"global\n    daemon\n")
    upload = subprocess.Popen(["/bin/sh", "-c", script], stdin=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert upload.stdin is not None
    upload.stdin.write(b"glo")
    upload.stdin.flush()
    deadline = time.monotonic() + 30
    while not list(etc.glob(".hadeploy.*")) and time.monotonic() < deadline:
        time.sleep(0.01)
    (left,) = etc.glob(".hadeploy.*")
    upload.send_signal(signal.SIGHUP)
    upload.communicate(timeout=30)
    assert upload.returncode != 0
    assert leftovers(etc) == [] and target.read_bytes() == b"old\n"
    left.write_bytes(b"glo")  # as SIGKILL would leave it
    assert write(target, b"global\n    daemon\n", backup).returncode == 0
    assert leftovers(etc) == [] and target.read_bytes() == b"global\n    daemon\n"


def test_failed_validation_leaves_the_old_file_untouched_and_no_temp_file(etc: Path) -> None:
    target, backup = etc / "haproxy.cfg", etc.parent / "backup" / "haproxy.cfg"
    target.write_bytes(b"good config\n")
    os.chmod(target, 0o600)
    before = target.stat()
    result = write(target, b"broken config\n", backup,
                   validate="grep -q good {tmp} || { echo 'config invalid' >&2; exit 1; }")
    assert result.returncode != 0
    assert "config invalid" in result.stderr
    assert target.read_bytes() == b"good config\n"
    after = target.stat()
    assert (after.st_ino, after.st_mode, after.st_mtime_ns) == (
        before.st_ino, before.st_mode, before.st_mtime_ns)
    assert leftovers(etc) == []
    assert not backup.exists()


def test_validation_sees_the_new_content(etc: Path) -> None:
    target, backup = etc / "keepalived.conf", etc / "bk" / "keepalived.conf"
    result = write(target, b"good\n", backup, validate="grep -q good {tmp}")
    assert result.returncode == 0, result.stderr
    assert target.read_bytes() == b"good\n"


def test_undo_file_restores_the_backup_once(etc: Path) -> None:
    target, backup = etc / "haproxy.cfg", etc.parent / "bk" / "haproxy.cfg"
    target.write_bytes(b"original\n")
    assert write(target, b"new\n", backup).returncode == 0
    record = {"kind": "file", "path": str(target), "existed": True, "backup": str(backup)}
    (undo,) = undo_file(ctx(), record)
    assert sh(undo.script).returncode == 0
    assert target.read_bytes() == b"original\n"
    assert not backup.exists()
    assert leftovers(etc) == []
    target.write_bytes(b"changed by hand after the rollback\n")
    assert sh(undo.script).returncode == 0  # a second undo has no backup: no-op
    assert target.read_bytes() == b"changed by hand after the rollback\n"


def test_undo_file_removes_a_file_that_did_not_exist(etc: Path) -> None:
    target = etc / "new.cfg"
    target.write_bytes(b"x")
    (undo,) = undo_file(ctx(), {"kind": "file", "path": str(target), "existed": False})
    assert sh(undo.script).returncode == 0
    assert not target.exists()
    assert UNDO["file"] is undo_file


def test_file_probe_round_trip(etc: Path) -> None:
    target = etc / "f"
    assert parse_file_probe(sh(file_probe(str(target), True)).stdout).exists is False
    target.write_bytes(b"line 1\nline 2\n")
    os.chmod(target, 0o640)
    state = parse_file_probe(sh(file_probe(str(target), True)).stdout)
    assert (state.owner, state.group, state.mode) == (USER, GROUP, "0640")
    assert state.sha256 == hashlib.sha256(b"line 1\nline 2\n").hexdigest()
    assert state.content == b"line 1\nline 2\n"
    assert parse_file_probe(sh(file_probe(str(target), False)).stdout).content is None
    target.write_bytes(b"")
    assert parse_file_probe(sh(file_probe(str(target), True)).stdout).content == b""


# -- file operations: decisions ---------------------------------------------------------------


def probe_of(content: bytes | None, owner: str = "root", group: str = "root",
             mode: str = "644") -> Probe:
    if content is None:
        return Probe("absent\n")
    import base64

    sha = hashlib.sha256(content).hexdigest()
    return Probe(f"{owner} {group} {mode}\n{sha}\n{base64.b64encode(content).decode()}\n")


CFG = FileContent("cfg", "/etc/haproxy/haproxy.cfg", lambda c: b"global\n", mode="0640",
                  validation="haproxy -c -f {tmp}")


def test_file_content_done_needs_content_owner_and_mode() -> None:
    assert CFG.done(ctx(), CFG.read(ctx(), probe_of(b"global\n", mode="640")))
    assert not CFG.done(ctx(), CFG.read(ctx(), probe_of(b"global\n", mode="644")))
    assert not CFG.done(ctx(), CFG.read(ctx(), probe_of(b"global\n", owner="haproxy", mode="640")))
    assert not CFG.done(ctx(), CFG.read(ctx(), probe_of(b"old\n", mode="640")))
    assert not CFG.done(ctx(), CFG.read(ctx(), probe_of(None)))


def test_file_content_intent_apply_and_preview() -> None:
    seen = probe_of(b"old\n")
    assert CFG.intent(ctx(), CFG.read(ctx(), seen)) == {
        "kind": "file", "path": "/etc/haproxy/haproxy.cfg", "existed": True,
        "backup": f"{BACKUP_ROOT}/run1/lb.step/etc/haproxy/haproxy.cfg"}
    assert CFG.intent(ctx(), CFG.read(ctx(), probe_of(None)))["backup"] is None
    (command,) = CFG.apply(ctx(), CFG.read(ctx(), seen))
    assert command.stdin == b"global\n"
    assert "haproxy -c -f \"$tmp\"" in command.script
    assert command.shown() == ("write /etc/haproxy/haproxy.cfg (root:root 0640, 7 bytes, "
                               "atomic, validated)")
    preview = CFG.preview(ctx(detail=True), CFG.read(ctx(detail=True), seen))
    assert "-old\n" in preview and "+global\n" in preview
    assert "root:root 0644 -> root:root 0640" in preview


def test_file_edit_of_a_missing_file() -> None:
    edit = FileEdit("e", "/etc/sysctl.conf", lambda c, text: text + "x=1\n")
    with pytest.raises(FileNotFoundError, match=r"/etc/sysctl\.conf does not exist on lb1"):
        edit.done(ctx(), edit.read(ctx(), probe_of(None)))
    optional = FileEdit("e", "/etc/sysctl.conf", lambda c, text: text, missing_ok=True)
    assert optional.done(ctx(), optional.read(ctx(), probe_of(None)))


def test_file_edit_keeps_owner_and_mode() -> None:
    edit = FileEdit("e", "/etc/sysctl.conf",
                    lambda c, text: text if "x=1" in text else text + "x=1\n")
    seen = probe_of(b"a=1\n", owner="root", group="adm", mode="600")
    assert not edit.done(ctx(), edit.read(ctx(), seen))
    (command,) = edit.apply(ctx(), edit.read(ctx(), seen))
    assert command.stdin == b"a=1\nx=1\n"
    assert "chown root:adm" in command.script and "chmod 0600" in command.script
    assert edit.done(ctx(), edit.read(ctx(), probe_of(b"a=1\nx=1\n", owner="root", group="adm",
                                                      mode="600")))


def test_unified_diff_masks_secret_values() -> None:
    diff = unified_diff("/etc/keepalived/keepalived.conf", b"auth_pass oldpass1\n",
                        b"auth_pass newpass2\nadvert_int 1\n")
    assert "oldpass1" not in diff and "newpass2" not in diff
    assert "+advert_int 1\n" in diff
    assert diff.startswith("--- /etc/keepalived/keepalived.conf (now)")


# -- packages ---------------------------------------------------------------------------------


HAPROXY = PackagesInstalled("packages", ("haproxy", "keepalived"))


def test_packages_done_and_intent(package_windows: Path) -> None:
    assert HAPROXY.done(ctx(), HAPROXY.read(ctx(), Probe("haproxy\nkeepalived\n")))
    assert not HAPROXY.done(ctx(), HAPROXY.read(ctx(), Probe("haproxy\n")))
    assert HAPROXY.intent(ctx(), HAPROXY.read(ctx(), Probe("haproxy\n"))) == {
        "kind": "packages", "requested": ["keepalived"],
        "window": str(package_windows / "runs" / "run1.packages")}
    (command,) = HAPROXY.apply(ctx(), HAPROXY.read(ctx(), Probe("haproxy\n")))
    assert ("apt-get install -y -q -o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confold "
            "keepalived") in command.script
    assert "haproxy" not in command.shown()


@dataclass(frozen=True)
class ListProfile(Profile):
    """A profile whose package database is a text file (to run the install script here)."""

    db: str = ""

    def all_installed_probe(self) -> str:
        return f"sort {self.db}"

    def install(self, packages: tuple[str, ...]) -> str:
        return "{ " + "; ".join(f"echo {p} >> {self.db}" for p in ("libdep", *packages)) + "; }"


def test_install_script_records_exactly_the_new_packages(package_windows: Path) -> None:
    db = package_windows / "db"
    db.write_text("haproxy\nlibc6\n")
    profile = ListProfile("debian", "debian", "apt-get", "systemd", db=str(db))
    (command,) = HAPROXY.apply(ctx(profile), HAPROXY.read(ctx(profile), Probe("haproxy\n")))
    result = sh(command.script)
    assert result.returncode == 0, result.stderr
    assert HAPROXY.outcome(ctx(profile), [result.stdout]) == {
        "installed": ["keepalived", "libdep"]}
    assert HAPROXY.outcome(ctx(profile), ["install cut off"]) == {}
    assert HAPROXY.outcome(ctx(profile), [f"{NEW_MARK}\n"]) == {"installed": []}
    # the window it installed in stays, owner-only, closed
    window = package_windows / "runs" / "run1.packages"
    assert re.fullmatch(r"since=\S+ \S+\nuntil=\S+ \S+\n", window.read_text())
    assert window.stat().st_mode & 0o777 == 0o600
    assert (package_windows / "runs").stat().st_mode & 0o777 == 0o700


def test_a_resumed_install_counts_what_the_dead_attempt_added_not_what_it_upgraded(
        package_windows: Path) -> None:
    """The workstation died while its install ran: libdead and keepalived came in then (the
    listing the resumed attempt takes counts them as there before), libc6 was upgraded (it was
    there before the run). The window the dead attempt opened is what tells them apart."""
    db = package_windows / "db"
    db.write_text("haproxy\nlibc6\nlibdead\nkeepalived\n")
    (package_windows / "runs").mkdir()
    (package_windows / "runs" / "run1.packages").write_text("since=2026-12-03 22:51:40\n")
    (package_windows / "dpkg.log").write_text(
        "2026-12-03 22:51:39 install libearlier:amd64 <none> 1\n"
        "2026-12-03 22:51:41 install libdead:amd64 <none> 1.0\n"
        "2026-12-03 22:51:42 upgrade libc6:amd64 2.36-9 2.36-10\n"
        "2026-12-03 22:51:43 install keepalived:amd64 <none> 2.2\n"
        "2026-12-03 22:51:44 install libgone:amd64 <none> 1\n")
    profile = ListProfile("debian", "debian", "apt-get", "systemd", db=str(db))
    (command,) = HAPROXY.apply(ctx(profile), HAPROXY.read(ctx(profile), Probe("haproxy\n")))
    result = sh(command.script)
    assert result.returncode == 0, result.stderr
    # libdep and keepalived again (the fake install appends), libdead from the window
    assert HAPROXY.outcome(ctx(profile), [result.stdout]) == {
        "installed": ["keepalived", "libdead", "libdep"]}
    assert (package_windows / "runs" / "run1.packages").read_text().startswith(
        "since=2026-12-03 22:51:40\nuntil=")


def test_a_rollback_removes_what_dpkg_installed_in_the_runs_window(package_windows: Path) -> None:
    """The install died before it reported (the record names only what was requested): the
    rollback also removes what dpkg installed afresh in the window, never what it upgraded."""
    (package_windows / "runs").mkdir()
    window = package_windows / "runs" / "run1.packages"
    window.write_text("since=2026-12-03 22:51:40\n")
    (package_windows / "dpkg.log").write_text(
        "2026-12-03 22:51:41 install libdead:amd64 <none> 1.0\n"
        "2026-12-03 22:51:42 upgrade libc6:amd64 2.36-9 2.36-10\n")
    db = package_windows / "db"
    db.write_text("keepalived\nlibc6\nlibdead\n")
    profile = ListProfile("debian", "debian", "apt-get", "systemd", db=str(db))
    (command,) = undo_packages(ctx(profile), {"kind": "packages", "requested": ["keepalived"],
                                              "window": str(window)})
    assert f"since=$(sed -n 's/^since=//p' {window})" in command.script
    script = command.script.replace("apt-get purge", "echo PURGE").replace(
        "dpkg-query -W", "echo keepalived; : ")
    script = re.sub(r"while holders=.*?done\n", "", script, flags=re.S)
    result = sh(script)
    assert result.returncode == 0, result.stderr
    assert "PURGE -y -q -o DPkg::Lock::Timeout=60 keepalived libdead" in result.stderr
    with pytest.raises(ValueError, match="package window"):
        undo_packages(ctx(profile), {"kind": "packages", "requested": ["keepalived"],
                                     "window": "/etc/passwd"})


def test_undo_packages_removes_requested_and_new_dependencies() -> None:
    (command,) = undo_packages(ctx(), {"kind": "packages", "requested": ["keepalived"],
                                       "installed": ["libdep", "keepalived"]})
    assert command.shown() == ("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q "
                               "-o DPkg::Lock::Timeout=60 keepalived libdep")
    # an install cut off before it reported: the requested packages are still removed
    (command,) = undo_packages(ctx(), {"kind": "packages", "requested": ["keepalived"]})
    assert command.shown().endswith("purge -y -q -o DPkg::Lock::Timeout=60 keepalived")
    assert undo_packages(ctx(), {"kind": "packages", "requested": []}) == []
    el = undo_packages(ctx(profile_for("el9")), {"kind": "packages", "requested": ["haproxy"]})
    assert el[0].shown() == "dnf remove -y -q haproxy"


def test_install_records_the_trees_it_will_create_and_rollback_deletes_them(
        tmp_path: Path, package_windows: Path) -> None:
    existing, fresh = tmp_path / "etc-keystone", tmp_path / "etc-glance"
    existing.mkdir()
    op = PackagesInstalled("packages", ("glance-api",), creates=(str(existing), str(fresh)))
    script = op.probe(ctx())
    assert script is not None
    probe = sh(script)
    assert probe.returncode == 0, probe.stderr
    seen = Probe(probe.stdout)
    assert not op.done(ctx(), op.read(ctx(), seen))
    record = op.intent(ctx(), op.read(ctx(), seen))
    assert record == {"kind": "packages", "requested": ["glance-api"], "created": [str(fresh)],
                      "window": str(package_windows / "runs" / "run1.packages")}
    purge, remove = undo_packages(ctx(), record)
    assert "purge" in purge.shown()
    fresh.mkdir()
    (fresh / "generated.conf").write_text("made by a maintainer script\n")
    assert sh(remove.script).returncode == 0
    assert not fresh.exists() and existing.exists()
    # packages already gone (a repeated rollback that was cut off): the tree still goes
    assert [c.shown() for c in undo_packages(ctx(), {"requested": [], "created": ["/etc/x"]})
            ] == ["rm -rf --one-file-system -- /etc/x"]


@pytest.mark.parametrize("path", ["/", "/etc", "etc/glance", "/etc/../root", "/etc/glance/"])
def test_rollback_refuses_to_delete_a_hand_edited_created_path(path: str) -> None:
    with pytest.raises(ValueError, match="refusing to delete"):
        undo_packages(ctx(), {"kind": "packages", "requested": ["x"], "created": [path]})


@pytest.mark.skipif(not Path("/usr/bin/dpkg-query").exists(), reason="needs dpkg")
def test_debian_installed_probe_lists_only_installed_packages() -> None:
    probe = profile_for("debian").installed_probe(("dpkg", "no-such-package-hadeploy"))
    result = sh(probe)
    assert result.returncode == 0
    assert result.stdout.split() == ["dpkg"]


# -- sysctl -----------------------------------------------------------------------------------


def test_sysctl_compares_vector_values_field_by_field() -> None:
    ports = SysctlValue("ports", "net.ipv4.ip_local_port_range", "32768 60999")
    assert ports.done(ctx(), ports.read(ctx(), Probe("32768\t60999\n")))
    assert not ports.done(ctx(), ports.read(ctx(), Probe("1024\t65000\n")))
    assert ports.intent(ctx(), ports.read(ctx(), Probe("1024\t65000\n")))["previous"] == (
        "1024 65000")
    nonlocal_bind = SysctlValue("sysctl", "net.ipv4.ip_nonlocal_bind", "1")
    assert nonlocal_bind.done(ctx(), nonlocal_bind.read(ctx(), Probe("1\n")))
    assert not nonlocal_bind.done(ctx(), nonlocal_bind.read(ctx(), Probe("0\n")))
    assert not nonlocal_bind.done(ctx(), nonlocal_bind.read(ctx(), Probe("")))
    assert nonlocal_bind.apply(ctx(), nonlocal_bind.read(ctx(), Probe("0\n"))) == [
        Command("sysctl -q -w net.ipv4.ip_nonlocal_bind=1")]


def test_undo_sysctl() -> None:
    assert undo_sysctl(ctx(), {"kind": "sysctl", "key": "net.ipv4.ip_local_port_range",
                               "previous": "1024 65000"}) == [
        Command("sysctl -q -w 'net.ipv4.ip_local_port_range=1024 65000'")]
    assert undo_sysctl(ctx(), {"kind": "sysctl", "key": "k", "previous": ""}) == []


# -- services ---------------------------------------------------------------------------------


KEEPALIVED = ServiceRunning("keepalived", "keepalived", ("/run/keepalived.pid",),
                            frozenset({"lb.keepalived"}))


def test_service_done_needs_enabled_running_and_no_pending_restart() -> None:
    assert KEEPALIVED.done(ctx(), KEEPALIVED.read(ctx(), Probe("enabled\nrunning\n")))
    assert not KEEPALIVED.done(ctx(), KEEPALIVED.read(ctx(), Probe("disabled\nrunning\n")))
    assert not KEEPALIVED.done(ctx(), KEEPALIVED.read(ctx(), Probe("enabled\nstopped\n")))
    changed = ctx(changed=frozenset({"lb.keepalived"}))
    assert not KEEPALIVED.done(changed, KEEPALIVED.read(changed, Probe("enabled\nrunning\n")))
    # restarted: fine now
    assert KEEPALIVED.verify(changed, KEEPALIVED.read(changed, Probe("enabled\nrunning\n")))
    assert not KEEPALIVED.verify(changed, KEEPALIVED.read(changed, Probe("enabled\nstopped\n")))


def test_service_apply_enables_then_starts_or_restarts() -> None:
    first = KEEPALIVED.apply(ctx(), KEEPALIVED.read(ctx(), Probe("disabled\nstopped\n")))
    assert [c.shown() for c in first] == [
        "systemctl enable keepalived", "systemctl start keepalived (then wait until it runs)"]
    sysv = ctx(profile_for("debian", "sysv"), changed=frozenset({"lb.keepalived"}))
    (restart,) = KEEPALIVED.apply(sysv, KEEPALIVED.read(sysv, Probe("enabled\nrunning\n")))
    assert restart.shown() == "service keepalived restart (then wait until it runs)"
    assert KEEPALIVED.intent(ctx(), KEEPALIVED.read(ctx(), Probe("disabled\nrunning\n"))) == {
        "kind": "service", "service": "keepalived", "pidfiles": ["/run/keepalived.pid"],
        "was_enabled": False, "was_running": True}


def test_undo_service_reverses_only_what_the_run_did() -> None:
    record = {"kind": "service", "service": "haproxy", "pidfiles": []}
    both = undo_service(ctx(), {**record, "was_enabled": False, "was_running": False})
    assert [c.shown() for c in both] == ["systemctl stop haproxy", "systemctl disable haproxy"]
    # It was running, and the run restarted it for a new configuration: once the files are
    # restored, it is restarted again (deferred until every other undo of the run is done).
    (restart,) = undo_service(ctx(), {**record, "was_enabled": True, "was_running": True})
    assert restart.deferred
    assert restart.script.startswith("if systemctl cat haproxy >/dev/null 2>&1; then ( ")
    assert restart.shown() == "systemctl restart haproxy (after the files are restored)"
    el6 = undo_service(ctx(profile_for("el6")), {**record, "was_enabled": False,
                                                 "was_running": True})
    assert [c.shown() for c in el6] == [
        "service haproxy restart (after the files are restored)", "chkconfig haproxy off"]
    assert "[ -x /etc/init.d/haproxy ]" in el6[0].script


def test_the_rollbacks_restart_starts_a_daemon_its_init_script_failed_to_restart(
        tmp_path: Path) -> None:
    """Swift's init script failed its restart on a stale pid ("failed to kill PID: No such
    process") and left nothing running: the rollback's deferred restart starts it, waits
    until it runs, and fails saying so only when it never does."""
    pidfile, log = tmp_path / "svc.pid", tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f"""#!/bin/sh
echo "$1" >> {log}
case "$1" in
  cat) exit 0 ;;
  restart) echo "failed to kill PID: No such process" >&2; exit 1 ;;
  start) [ -e {tmp_path}/never ] && exit 1; sleep 30 >/dev/null 2>&1 & echo $! > {pidfile} ;;
esac
""")
    fake.chmod(0o755)
    record = {"kind": "service", "service": "svc", "pidfiles": [str(pidfile)],
              "was_enabled": True, "was_running": True}
    (restart,) = undo_service(ctx(), record)
    path = f"PATH={q(str(tmp_path))}:$PATH; "
    done = sh(path + restart.script)
    try:
        assert done.returncode == 0, done.stderr
        assert log.read_text().split() == ["cat", "restart", "start"]
        assert sh(running_probe("svc", (str(pidfile),), "systemd")).stdout == "running\n"
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    (tmp_path / "never").touch()
    pidfile.unlink()
    failed = sh(path + restart.script.replace("-ge 120", "-ge 2"))  # a 0.5 s wait
    assert failed.returncode == 1
    assert "svc is not running after restart" in failed.stderr


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "30"])
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


def test_running_probe_reads_pid_files(tmp_path: Path,
                                       sleeper: subprocess.Popen[bytes]) -> None:
    pidfile, other = tmp_path / "svc.pid", tmp_path / "missing.pid"
    probe = running_probe("svc", (str(other), str(pidfile)), "sysv")
    assert sh(probe).stdout == "stopped\n"  # no pid file at all
    pidfile.write_text("not-a-pid\n")
    assert sh(probe).stdout == "stopped\n"
    pidfile.write_text(f"{sleeper.pid}\n")
    assert sh(probe).stdout == "running\n"
    sleeper.send_signal(signal.SIGSTOP)  # stopped (T) is still alive
    assert sh(probe).stdout == "running\n"
    sleeper.kill()
    sleeper.wait()
    assert sh(probe).stdout == "stopped\n"


def test_running_probe_does_not_count_a_zombie(tmp_path: Path) -> None:
    pidfile = tmp_path / "svc.pid"
    child = subprocess.Popen(["sleep", "30"])
    try:
        child.kill()
        # not reaped yet: /proc/<pid>/stat says Z
        deadline = time.monotonic() + 10
        stat = Path(f"/proc/{child.pid}/stat")
        while stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "child never became a zombie"
            time.sleep(0.01)
        pidfile.write_text(f"{child.pid}\n")
        assert sh(running_probe("svc", (str(pidfile),), "systemd")).stdout == "stopped\n"
    finally:
        child.wait()


def test_wait_running_succeeds_at_once_for_a_running_daemon(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "svc.pid"
    wait = wait_running(profile_for("debian"), "svc", (str(pidfile),), 0)
    assert sh(wait).returncode == 1  # no pid file: not running, no wait allowed
    pidfile.write_text(f"{sleeper.pid}\n")
    assert sh(wait).returncode == 0


def test_a_restart_waits_for_a_new_daemon_not_the_one_it_replaced(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "svc.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    remember = f'old="{pids_in((str(pidfile),))}"; '
    wait = wait_running(profile_for("debian"), "svc", (str(pidfile),), 0, replaced=True)
    # the old daemon still runs (it is stopping): the restart is not done yet
    assert sh(remember + wait).returncode == 1
    successor = subprocess.Popen(["sleep", "30"])
    try:
        assert sh(f"{remember}echo {successor.pid} > {pidfile}; {wait}").returncode == 0
    finally:
        successor.kill()
        successor.wait()
    sysv = ctx(profile_for("debian", "sysv"), changed=frozenset({"lb.keepalived"}))
    (restart,) = KEEPALIVED.apply(sysv, KEEPALIVED.read(sysv, Probe("enabled\nrunning\n")))
    assert restart.script.startswith('old="$(cat /run/keepalived.pid ')
    (start,) = KEEPALIVED.apply(sysv, KEEPALIVED.read(sysv, Probe("enabled\nstopped\n")))
    assert "old=" not in start.script  # nothing to replace


def test_debian_openstack_daemons_are_probed_by_their_pid_file_under_sysv_only() -> None:
    """openstack-pkg-tools' init scripts answer `status` by `pidof uwsgi_python3` when no pid
    file is named: any other uwsgi API on the host made nova-api-metadata look running
    (and its start a restart). Under sysv the catalog's pid file decides; under systemd,
    whose units write none, systemctl does."""
    variant = load_catalog()["nova"].variant("debian", "modern")
    assert variant.sysv_pidfiles("nova-api-metadata") == ("/var/run/nova/nova-api-metadata.pid",)
    neutron = load_catalog()["neutron"].variant("debian", "modern")
    assert neutron.sysv_pidfiles("neutron-api") == ("/var/run/neutron/neutron-server.pid",)
    swift = load_catalog()["swift"].variant("debian", "modern")
    assert swift.sysv_pidfiles("swift-proxy") == (
        "/var/run/swift/swift-proxy-server-proxy-server.pid",)
    assert neutron.sysv_pidfiles("neutron-rpc-server") == (
        "/var/run/neutron/neutron-rpc-server.pid",)
    service = ServiceRunning("service:nova-api-metadata", "nova-api-metadata",
                             sysv_pidfiles=variant.sysv_pidfiles("nova-api-metadata"))
    sysv = ctx(profile_for("debian", "sysv"))
    probe = service.fact(sysv).command or ""
    assert "/var/run/nova/nova-api-metadata.pid" in probe and " status" not in probe
    systemd = ctx(profile_for("debian", "systemd"))
    probe = service.fact(systemd).command or ""
    assert "nova-api-metadata.pid" not in probe and "systemctl is-active" in probe
    state = service.read(sysv, Probe("enabled\nrunning\n"))
    assert service.intent(sysv, state)["pidfiles"] == ["/var/run/nova/nova-api-metadata.pid"]


# -- reloads (haproxy on Debian) ---------------------------------------------------------------

HAPROXY_SERVICE = ServiceRunning("haproxy", "haproxy", ("/run/haproxy.pid",),
                         restart_after=frozenset({"lb.haproxy-options"}),
                         reload_after=frozenset({"lb.haproxy-cfg"}),
                         reload_on=frozenset({"debian"}))
RUNNING = Probe("enabled\nrunning\n")


@pytest.mark.parametrize(("platform", "changed", "probe", "verb"), [
    ("debian", {"lb.haproxy-cfg"}, "enabled\nrunning\n", "reload"),
    ("debian", {"lb.haproxy-cfg", "lb.haproxy-options"}, "enabled\nrunning\n", "restart"),
    ("debian", {"lb.haproxy-options"}, "enabled\nrunning\n", "restart"),
    ("debian", {"lb.haproxy-cfg"}, "enabled\nstopped\n", "start"),
    ("el7", {"lb.haproxy-cfg"}, "enabled\nrunning\n", "restart"),  # EL: as before
    ("el6", {"lb.haproxy-cfg"}, "enabled\nrunning\n", "restart"),
])
def test_a_config_change_reloads_only_where_it_can(platform: str, changed: set[str], probe: str,
                                                   verb: str) -> None:
    c = ctx(profile_for(platform, "sysv"), changed=frozenset(changed))
    state = HAPROXY_SERVICE.read(c, Probe(probe))
    assert not HAPROXY_SERVICE.done(c, state)
    assert HAPROXY_SERVICE.preview(c, state) == f"  haproxy: {verb}\n"  # what --dry-run shows
    (command,) = HAPROXY_SERVICE.apply(c, state)
    assert command.shown().startswith(f"service haproxy {verb} (then wait until ")
    assert ("verb" in HAPROXY_SERVICE.intent(c, state)) is (verb == "reload")
    assert HAPROXY_SERVICE.verify(c, state) is (probe == "enabled\nrunning\n")


def test_nothing_changed_nothing_reloaded() -> None:
    sysv = ctx(profile_for("debian", "sysv"))
    assert HAPROXY_SERVICE.done(sysv, HAPROXY_SERVICE.read(sysv, RUNNING))
    disabled = HAPROXY_SERVICE.read(sysv, Probe("disabled\nrunning\n"))
    # not enabled but running: enabled and restarted, as before
    assert HAPROXY_SERVICE.preview(sysv, disabled) == "  haproxy: enable and restart\n"


def test_rollback_reloads_what_the_run_reloaded() -> None:
    c = ctx(profile_for("debian", "sysv"), changed=frozenset({"lb.haproxy-cfg"}))
    record = HAPROXY_SERVICE.intent(c, HAPROXY_SERVICE.read(c, RUNNING))
    assert record == {"kind": "service", "service": "haproxy", "pidfiles": ["/run/haproxy.pid"],
                      "was_enabled": True, "was_running": True, "verb": "reload"}
    (reload,) = undo_service(c, record)
    assert reload.deferred
    assert reload.script == "if [ -x /etc/init.d/haproxy ]; then service haproxy reload >&2; fi"
    (restart,) = undo_service(c, {**record, "verb": "restart"})
    assert "service haproxy restart" in restart.script


def keepalived_op(inv: Inventory, node: int = 0) -> AnyOp:
    (services,) = [s for s in build_lb_runbook(inv).steps if s.id == "lb.services"]
    return next(op for op in services.ops[inv.balancers[node].name] if op.op_id == "keepalived")


@pytest.mark.parametrize("platform", ["debian", "el7", "el9"])
def test_a_new_keepalived_conf_reloads_keepalived_so_the_vip_stays(
        platform: str, example: Inventory) -> None:
    """A restart would give the VIP away (keepalived sends priority 0 when it stops) and take
    it back: two moves for nothing. A reload re-reads the file in the same daemon."""
    keepalived = keepalived_op(example)
    c = ctx(profile_for(platform, "systemd"), changed=frozenset({"lb.keepalived"}))
    state = keepalived.read(c, Probe("enabled\nrunning\nfree\n"))
    assert keepalived.preview(c, state) == "  keepalived: reload\n"
    (command,) = keepalived.apply(c, state)
    assert command.shown() == "systemctl reload keepalived (then check that it still runs)"
    assert keepalived.intent(c, state)["verb"] == "reload"


def test_the_plan_says_where_the_vip_ends_before_a_reload(example: Inventory) -> None:
    """On the holder: it stays, or it moves once to the node the new priorities elect."""
    vip = example.vip.address
    first, second = example.balancers[0], example.balancers[1]
    assert (first.priority or 0) > (second.priority or 0)
    held = Probe("enabled\nrunning\nheld\n")
    c = HostContext(first, profile_for("debian"), "run1", "lb.services",
                    changed_steps=frozenset({"lb.keepalived"}))
    stays = keepalived_op(example)
    assert stays.preview(c, stays.read(c, held)) == (
        f"  keepalived: reload\n  the VIP {vip} stays here; this host goes last\n")
    assert example.topology == "dedicated"
    swapped = replace(example, lbs=(replace(first, priority=second.priority),
                                    replace(second, priority=first.priority),
                                    *example.lbs[2:]))
    moves = keepalived_op(swapped)
    assert moves.preview(c, moves.read(c, held)) == (
        f"  keepalived: reload\n  the VIP {vip} moves once, from here to {second.name}: the "
        "highest priority now\n")
    assert moves.preview(c, moves.read(c, Probe("enabled\nrunning\nfree\n"))) == (
        "  keepalived: reload\n")
    sticky = replace(swapped, keepalived=replace(swapped.keepalived, nopreempt=True))
    assert keepalived_op(sticky).preview(c, moves.read(c, held)).endswith(
        f"the VIP {vip} stays here (nopreempt); this host goes last\n")


def test_an_in_place_reload_needs_the_same_daemon_still_running(
        tmp_path: Path, fake_bin: Path, sleeper: subprocess.Popen[bytes]) -> None:
    pidfile = tmp_path / "keepalived.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    service = ServiceRunning("keepalived", "keepalived", (str(pidfile),),
                             reload_after=frozenset({"lb.keepalived"}),
                             reload_on=frozenset({"debian"}), wait_seconds=1,
                             reload_in_place=True)
    c = ctx(profile_for("debian", "sysv"), changed=frozenset({"lb.keepalived"}))
    (command,) = service.apply(c, service.read(c, RUNNING))
    script = f"PATH={fake_bin}:$PATH; {command.script}"
    fake(fake_bin, "service", f'[ "$2" = reload ] && kill -0 {sleeper.pid}')  # SIGHUP: no exit
    assert sh(script).returncode == 0
    fake(fake_bin, "service", f'[ "$2" = reload ] && kill -9 {sleeper.pid}')  # died of it
    result = sh(script)
    assert result.returncode == 1
    assert "keepalived is not running after its reload" in result.stderr


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    return directory


def fake(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def reload_script(tmp_path: Path, fake_bin: Path, init: Init,
                  wait: int = 1) -> tuple[str, Path]:
    pidfile = tmp_path / "haproxy.pid"
    service = ServiceRunning("haproxy", "haproxy", (str(pidfile),),
                             reload_after=frozenset({"lb.haproxy-cfg"}),
                             reload_on=frozenset({"debian"}), wait_seconds=wait)
    c = ctx(profile_for("debian", init), changed=frozenset({"lb.haproxy-cfg"}))
    (command,) = service.apply(c, service.read(c, RUNNING))
    return f"PATH={fake_bin}:$PATH; {command.script}", pidfile


def test_sysv_reload_succeeds_when_a_new_process_serves(
        tmp_path: Path, fake_bin: Path, sleeper: subprocess.Popen[bytes]) -> None:
    script, pidfile = reload_script(tmp_path, fake_bin, "sysv")
    pidfile.write_text(f"{sleeper.pid}\n")
    # Debian's reload: a new haproxy writes its pid; the old one finishes (here: runs on)
    fake(fake_bin, "service", f'sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}')
    try:
        result = sh(script)
        assert result.returncode == 0, result.stderr
        assert pidfile.read_text().strip() != str(sleeper.pid)
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_a_failed_reload_fails_with_haproxys_message(
        tmp_path: Path, fake_bin: Path, sleeper: subprocess.Popen[bytes]) -> None:
    script, pidfile = reload_script(tmp_path, fake_bin, "sysv")
    pidfile.write_text(f"{sleeper.pid}\n")
    fake(fake_bin, "service", "echo '[ALERT] Failed to get the sockets from the old process!' "
         ">&2; exit 1")
    result = sh(script)
    assert result.returncode == 1
    assert "[ALERT] Failed to get the sockets from the old process!" in result.stderr
    assert "haproxy did not reload; the running one keeps its configuration" in result.stderr
    assert pidfile.read_text() == f"{sleeper.pid}\n" and sleeper.poll() is None


def test_a_reload_that_starts_no_new_process_fails(
        tmp_path: Path, fake_bin: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Exit 0 is not enough (init scripts lie): the same old process still serving fails."""
    script, pidfile = reload_script(tmp_path, fake_bin, "sysv", wait=0)
    pidfile.write_text(f"{sleeper.pid}\n")
    fake(fake_bin, "service", "exit 0")
    result = sh(script)
    assert result.returncode == 1
    assert "haproxy did not reload" in result.stderr


def test_systemd_reload_waits_for_a_new_worker_of_the_same_master(
        tmp_path: Path, fake_bin: Path) -> None:
    """Under systemd the pid file names the master, which stays: a new worker is the proof."""
    script, pidfile = reload_script(tmp_path, fake_bin, "systemd")
    master = subprocess.Popen(["/bin/sh", "-c", "trap 'sleep 300 &' USR2; sleep 300 & "
                               "while :; do wait; done"])
    try:
        pidfile.write_text(f"{master.pid}\n")
        fake(fake_bin, "journalctl", "echo 'journal: haproxy[1]: reload failed' >&2")
        fake(fake_bin, "systemctl", f'[ "$1" = reload ] && kill -USR2 {master.pid}; exit 0')
        time.sleep(0.2)  # the first worker
        result = sh(script)
        assert result.returncode == 0, result.stderr
        fake(fake_bin, "systemctl", "exit 0")  # the master is told nothing: no new worker
        result = sh(script)
        assert result.returncode == 1
        assert "journal: haproxy[1]: reload failed" in result.stderr
    finally:
        for stat in Path("/proc").glob("[0-9]*/stat"):  # its workers, by their parent's pid
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == str(master.pid):
                os.kill(int(stat.parent.name), signal.SIGKILL)
        master.kill()
        master.wait()


# -- requirements -----------------------------------------------------------------------------


def test_requirement_fails_with_its_problem_and_never_changes_anything() -> None:
    def judge(c: HostContext, seen: Probe) -> str | None:
        return None if "eth0" in seen.stdout else "interface eth0 is missing; fix the inventory"

    req = Requirement("interface", Fact.raw("ip -o link"), judge, "interface eth0")
    assert req.done(ctx(), req.read(ctx(), Probe("2: eth0: <UP>\n")))
    assert req.intent(ctx(), req.read(ctx(), Probe(""))) == {}
    (command,) = req.apply(ctx(), req.read(ctx(), Probe("lo\n")))
    result = sh(command.script)
    assert result.returncode == 1
    assert result.stderr == "interface eth0 is missing; fix the inventory\n"
    assert req.title() == "interface eth0"


def test_a_requirement_decided_locally_fails_without_asking_the_host() -> None:
    def judge(c: HostContext, problem: str) -> str | None:
        return problem or None

    req = Requirement("bind", Fact.known("the API binds 0.0.0.0"), judge, "API bound")
    assert req.probe(ctx()) is None  # nothing to run: no round trip
    seen = req.read(ctx(), Probe(""))
    assert not req.done(ctx(), seen)
    (command,) = req.apply(ctx(), seen)
    result = sh(command.script)
    assert (result.returncode, result.stderr) == (1, "the API binds 0.0.0.0\n")
    met = Requirement("bind", Fact.known(""), judge, "API bound")
    assert met.probe(ctx()) is None and met.done(ctx(), met.read(ctx(), Probe("")))


def test_debian_install_finishes_a_dpkg_run_cut_off_half_way_first() -> None:
    (command,) = HAPROXY.apply(ctx(), HAPROXY.read(ctx(), Probe("haproxy\n")))
    finish = command.script.index("dpkg --audit")
    assert "dpkg --configure -a --force-confold" in command.script
    assert finish < command.script.index("apt-get install")
    el9 = ctx(profile_for("el9"))
    (el,) = HAPROXY.apply(el9, HAPROXY.read(el9, Probe("haproxy\n")))
    assert "dpkg" not in el.script


# -- decisions as data: operation + faked fact -> commands ----------------------------------


@pytest.mark.parametrize(("op", "fact", "commands"), [
    (KEEPALIVED, ServiceState(enabled=True, running=True), None),
    (KEEPALIVED, ServiceState(enabled=False, running=False),
     ["systemctl enable keepalived", "systemctl start keepalived (then wait until it runs)"]),
    (KEEPALIVED, ServiceState(enabled=True, running=False),
     ["systemctl start keepalived (then wait until it runs)"]),
    (HAPROXY, PackagesSeen(frozenset({"haproxy", "keepalived"})), None),
    (HAPROXY, PackagesSeen(frozenset({"keepalived"})),
     ["DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
      "-o DPkg::Lock::Timeout=60 -o Dpkg::Options::=--force-confold haproxy"]),
    (SysctlValue("sysctl", "net.ipv4.ip_nonlocal_bind", "1"), "1", None),
    (SysctlValue("sysctl", "net.ipv4.ip_nonlocal_bind", "1"), "0",
     ["sysctl -q -w net.ipv4.ip_nonlocal_bind=1"]),
    (SysctlValue("sysctl", "net.ipv4.ip_local_port_range", "32768 60999"), "32768\t60999", None),
    (CFG, FileState(True, "root", "root", "0640", hashlib.sha256(b"global\n").hexdigest()), None),
    (CFG, FileState(exists=False),
     ["write /etc/haproxy/haproxy.cfg (root:root 0640, 7 bytes, atomic, validated)"]),
])
def test_an_operation_decides_from_its_fact(op: AnyOp, fact: object,
                                            commands: list[str] | None) -> None:
    """None: already done, nothing to run; else the commands that make it so, as shown."""
    assert op.done(ctx(), fact) is (commands is None)
    if commands is not None:
        assert [c.shown() for c in op.apply(ctx(), fact)] == commands


# -- the undo registry -------------------------------------------------------------------------


# Every kind of operation with the fact it is handed (as data) when its change is journaled.
JOURNALED: list[tuple[AnyOp, object]] = [
    (CFG, FileState(exists=False)),
    (FileEdit("edit", "/etc/x.conf", lambda c, text: text), FileState(True, "root", "root",
                                                                      "0644", "", b"")),
    (HAPROXY, PackagesSeen(frozenset())),
    (SysctlValue("sysctl", "net.ipv4.ip_nonlocal_bind", "1"), "0"),
    (KEEPALIVED, ServiceState(enabled=False, running=False)),
    (TreeCopied("tree", "ctl1", "/etc/keystone"), TreesSeen(Manifest("absent"), None)),
    (EndpointsOnVip("endpoints", "/root/rc", "queens", "198.18.0.100", ("ctl1",)), []),
    (ServiceRetired("retire:glance-api", "glance-api", (), None, (9292,), ("198.18.0.11",), 5),
     ServiceState(enabled=True, running=True)),
]


def test_every_kind_an_intent_journals_has_an_undoer() -> None:
    kinds = {op.intent(ctx(), fact)["kind"] for op, fact in JOURNALED}
    assert kinds <= set(UNDO)
    # ...and no operation module journals a kind that table leaves out
    sources = "".join(path.read_text() for path in Path(ops.__file__).parent.glob("*.py"))
    assert set(re.findall(r'"kind": "([\w-]+)"', sources)) == kinds


def test_the_undo_registry_does_not_depend_on_what_was_imported_before() -> None:
    # A fresh interpreter that imports nothing but the registry (rollback's only need).
    result = subprocess.run([sys.executable, "-c", "from hadeploy.ops import UNDO; "
                             "print(' '.join(sorted(UNDO)))"],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.split() == ["drained-service", "endpoints", "file", "packages",
                                     "retired-service", "service", "sysctl", "tree"]


def _fake_dpkg(tmp_path: Path, state: dict[str, str]) -> str:
    """A PATH with dpkg-query and apt-get stand-ins over a package state file; the prefix."""
    status = tmp_path / "status"
    status.write_text("".join(f"{p} {s}\n" for p, s in state.items()))
    (tmp_path / "dpkg-query").write_text(f"""#!/bin/sh
if [ "$1" = -S ]; then shift; for d in "$@"; do case "$d" in
  /var/lib/glance|/var/lib/glance/images) echo "glance-common: $d" ;;
  /var|/var/lib|/srv) echo "base-files, glance-common: $d" ;;
  *) echo "dpkg-query: no path found matching pattern $d" >&2 ;; esac; done; exit 0; fi
shift 2; for p in "$@"; do grep "^$p " {status}; done; exit 0
""")
    (tmp_path / "apt-get").write_text(f"""#!/bin/sh
verb=$1; shift; echo "$verb $*" >> {tmp_path}/calls
for p in "$@"; do case "$p" in -*) continue ;; esac
  if [ "$verb" = purge ]; then sed -i "/^$p /d" {status}; else sed -i "s/^$p ii/$p rc/" {status}; fi
done
""")
    for name in ("dpkg-query", "apt-get"):
        (tmp_path / name).chmod(0o755)
    return f"PATH={q(str(tmp_path))}:$PATH; "


def test_a_purge_that_would_delete_a_mounted_store_is_a_removal_and_says_so(
        tmp_path: Path) -> None:
    """glance-common's purge runs `rm -rf /var/lib/glance`: on a controller where the shared
    image store is mounted at /var/lib/glance/images, the rollback would delete every image
    of the cloud. glance-common (dpkg owns the directory) and glance-api (by name) are only
    removed; the rest is purged; the operator reads what was kept, why, and how to finish."""
    state = {"glance-api": "ii", "glance-common": "ii", "python3-glance": "ii", "qemu-utils": "ii"}
    path = _fake_dpkg(tmp_path, state)
    mounts = tmp_path / "mounts"
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\nproc /proc proc rw 0 0\n"
                      "nfs:/images /var/lib/glance/images nfs4 rw 0 0\n")
    probe = profile_for("debian").installed_probe(tuple(state))
    script = purge_keeping_mounted_data(probe, "apt-get purge -y", str(mounts))
    done = sh(f"{path}present='{' '.join(state)}'\n{script}")
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == ["remove -y -q -o DPkg::Lock::Timeout=60 glance-api glance-common "
                     "python3-glance",
                     "purge -y qemu-utils"]
    (notice,) = framing.tagged_words(framing.NOTICE, done.stdout)
    assert " ".join(notice) == (
        "removed, not purged: glance-api glance-common python3-glance: their purge deletes "
        "the directory holding the mount point /var/lib/glance/images (its data stays); once "
        "that is unmounted: apt-get purge glance-api glance-common python3-glance")
    # Without such a mount, everything is purged and nothing is said.
    (tmp_path / "calls").unlink()
    mounts.write_text("/dev/sda1 / ext4 rw 0 0\n/dev/sdb1 /srv/node xfs rw 0 0\n")
    path = _fake_dpkg(tmp_path, state)
    done = sh(f"{path}present='{' '.join(state)}'\n{script}")
    assert (tmp_path / "calls").read_text().splitlines() == [
        "purge -y glance-api glance-common python3-glance qemu-utils"]
    assert framing.tagged_words(framing.NOTICE, done.stdout) == []


def test_an_install_stopped_by_a_failed_maintainer_script_is_configured_once_more(
        tmp_path: Path) -> None:
    """openstack-dashboard's postinst failed once in six lab installs (pyScss) and left it
    half-configured: the install configures it once more, says so, installs again. A
    failure that leaves nothing half-configured, or fails again, fails with its status."""
    status, calls = tmp_path / "status", tmp_path / "calls"
    (tmp_path / "apt-get").write_text(f"""#!/bin/sh
echo "apt-get $*" >> {calls}
if [ ! -e {tmp_path}/tried ]; then touch {tmp_path}/tried
  [ -e {tmp_path}/half ] && echo "iF openstack-dashboard" > {status}; exit 100; fi
""")
    (tmp_path / "dpkg").write_text(f"""#!/bin/sh
echo "dpkg $*" >> {calls}; [ -e {tmp_path}/broken ] && exit 1; : > {status}
""")
    (tmp_path / "dpkg-query").write_text(f"#!/bin/sh\ncat {status}\necho 'ii  bash'\n")
    for name in ("apt-get", "dpkg", "dpkg-query"):
        (tmp_path / name).chmod(0o755)
    status.write_text("")
    script = f"PATH={q(str(tmp_path))}:$PATH; set -e\n" + \
        configure_again("apt-get install -y openstack-dashboard-apache") + "echo installed\n"
    (tmp_path / "half").touch()
    done = sh(script)
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "apt-get install -y openstack-dashboard-apache", "dpkg --configure -a --force-confold",
        "apt-get install -y openstack-dashboard-apache"]
    (notice,) = framing.tagged_words(framing.NOTICE, done.stdout)
    assert " ".join(notice).startswith("the install stopped in the configuration of "
                                       "openstack-dashboard: configuring once more")
    assert done.stdout.endswith("installed\n")
    # Nothing half-configured: apt's own failure, with its status, no second try.
    for leftover in ("tried", "half", "calls"):
        (tmp_path / leftover).unlink()
    failed = sh(script)
    assert failed.returncode == 100 and calls.read_text().count("apt-get") == 1
    # Configured once more and failing again: the step fails.
    for leftover in ("tried", "calls"):
        (tmp_path / leftover).unlink()
    (tmp_path / "half").touch()
    (tmp_path / "broken").touch()
    assert sh(script).returncode == 1


def test_a_stop_its_init_script_failed_ends_the_process_of_the_pid_file(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Debian 12's swift-proxy stop gives up at a stale pid file of its own and leaves the
    proxy running: the process of the catalog's pid file is ended, and the operator told."""
    pidfile = tmp_path / "swift-proxy-server-proxy-server.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    (tmp_path / "systemctl").write_text("#!/bin/sh\nexit 1\n")  # a stop that stops nothing
    (tmp_path / "systemctl").chmod(0o755)
    script = stop_and_wait(profile_for("debian"), "swift-proxy", (str(pidfile),),
                           must_stop=True).replace("-ge 40", "-ge 2")
    done = sh(f"PATH={q(str(tmp_path))}:$PATH; {script}")
    assert done.returncode == 0, done.stderr
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    (notice,) = framing.tagged_words(framing.NOTICE, done.stdout)
    assert " ".join(notice) == ("swift-proxy still ran 10 s after its init script's stop: "
                                "ending the process of its pid file")


def test_a_restart_its_init_script_never_made_ends_the_old_daemon_and_starts_it(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Debian 12's swift-proxy restart stops at a stale pid file of another instance and
    leaves the proxy as it was: the old daemon of the pid file is ended, then started."""
    pidfile = tmp_path / "swift-proxy-server-proxy-server.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    # restart fails, start does nothing while the old daemon lives, else starts a new one
    (tmp_path / "systemctl").write_text(f"""#!/bin/sh
case "$1" in
  restart) exit 1 ;;
  start) s=$(cut -d' ' -f3 /proc/$(cat {pidfile})/stat 2>/dev/null)
         [ -n "$s" ] && [ "$s" != Z ] && exit 0
         sleep 30 >/dev/null 2>&1 & echo $! > {pidfile} ;;
esac
""")
    (tmp_path / "systemctl").chmod(0o755)
    command = restart_and_wait(profile_for("debian"), "swift-proxy", (str(pidfile),),
                               "restart", 0, True)
    done = sh(f"PATH={q(str(tmp_path))}:$PATH; {command.script}")
    new = int(pidfile.read_text())
    try:
        assert done.returncode == 0, done.stderr
        assert sleeper.wait(timeout=5) == -signal.SIGTERM and new != sleeper.pid
        (notice,) = framing.tagged_words(framing.NOTICE, done.stdout)
        assert " ".join(notice).startswith("swift-proxy's init script did not restart it")
    finally:
        os.kill(new, signal.SIGKILL)


def test_a_daemon_whose_init_restart_never_restarts_it_is_stopped_then_started(
        tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """Catalog `sysv_stop_start` (Debian 12's swift-proxy): under a sysv init its restart is
    a stop (the pid file's process ended 2 s after the script's stop did nothing) and a
    start, not a restart waited for twice before that fallback; the rollback's restart does
    the same. Under systemd the unit's restart is trusted."""
    pidfile = tmp_path / "swift-proxy-server-proxy-server.pid"
    pidfile.write_text(f"{sleeper.pid}\n")
    # `service swift-proxy stop` stops nothing; start starts a new daemon once the old is gone
    (tmp_path / "service").write_text(f"""#!/bin/sh
case "$2" in
  start) s=$(cut -d' ' -f3 /proc/$(cat {pidfile})/stat 2>/dev/null)
         [ -n "$s" ] && [ "$s" != Z ] && exit 0
         sleep 30 >/dev/null 2>&1 & echo $! > {pidfile} ;;
  restart) echo restart >> {tmp_path / "restarts"} ;;
esac
""")
    (tmp_path / "service").chmod(0o755)
    swift = load_catalog()["swift"].variant("debian", "modern")
    assert swift.sysv_stop_start
    service = ServiceRunning("service:swift-proxy", "swift-proxy", (), frozenset({"ctl.swift"}),
                             wait_seconds=30, sysv_pidfiles=(str(pidfile),),
                             sysv_stop_start=swift.sysv_stop_start)
    sysv = ctx(profile_for("debian", "sysv"), changed=frozenset({"ctl.swift"}))
    state = service.read(sysv, Probe("enabled\nrunning\n"))
    (restart,) = service.apply(sysv, state)
    assert restart.summary.startswith("service swift-proxy stop, then service swift-proxy start")
    started = time.monotonic()
    done = sh(f"PATH={q(str(tmp_path))}:$PATH; {restart.script}")
    new = int(pidfile.read_text())
    try:
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 10  # not the 2 x 30 s of a restart waited for
        assert sleeper.wait(timeout=5) == -signal.SIGTERM and new != sleeper.pid
        assert not (tmp_path / "restarts").exists()
        (notice,) = framing.tagged_words(framing.NOTICE, done.stdout)
        assert " ".join(notice).startswith("swift-proxy still ran 2 s after its init script's")
    finally:
        os.kill(new, signal.SIGKILL)
    record = service.intent(sysv, state)
    assert record["stop_start"] is True
    (undo,) = undo_service(sysv, record)
    assert undo.deferred and "swift-proxy stop" in undo.script and " restart" not in undo.script
    systemd = ctx(profile_for("debian", "systemd"), changed=frozenset({"ctl.swift"}))
    (restart,) = service.apply(systemd, service.read(systemd, Probe("enabled\nrunning\n")))
    assert restart.summary.startswith("systemctl restart swift-proxy")
    assert "stop_start" not in service.intent(systemd, state)
