"""Security of what hadeploy leaves behind and how it handles a sudo password (pure logic).

- The sudo password comes from $ssh.sudo_password_env, or a getpass prompt only when a
  terminal is attached (asked once per process), and travels on stdin, never on a command
  line. getpass and isatty are mocked: the real prompt needs a terminal.
- Files that hold secrets are pushed with modes no other user can read; temp files on the
  hosts (atomic_write, run here with /bin/sh) and on the workstation (write_atomic) are
  owner-only from their creation, whatever the umask; the state directory is 0700 and the
  journal and events log 0600.
The lab side (a real sudo asking for a password, modes on real hosts, a grep of every byte
a run leaves) is tests/lab/test_security.py.
"""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from hadeploy.console import EventLog
from hadeploy.errors import TransportError
from hadeploy.events import Event
from hadeploy.inventory import Inventory
from hadeploy.journal import Journal, RunStore, make_private_dir, write_atomic
from hadeploy.ops import FileContent, HostContext
from hadeploy.ops.files import atomic_write
from hadeploy.platforms import profile_for
from hadeploy.redact import Redactor
from hadeploy.runbook import build_lb_runbook
from hadeploy.transport import ssh
from hadeploy.transport.ssh import SshTransport, sudo_password, wrap
from tests.unit.examples import COLOCATED, HOSTS_EXAMPLE

ENV = "HADEPLOY_SUDO_PASSWORD"
SUDO_PW = "sudo-Pw 'quoted' $(id)"  # shell metacharacters: stdin must carry it unchanged
USER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture(autouse=True)
def no_typed_password(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with nothing typed yet and the variable unset."""
    monkeypatch.delenv(ENV, raising=False)
    ssh._TYPED_PASSWORDS.clear()
    yield
    ssh._TYPED_PASSWORDS.clear()


def _terminal(mocker: MockerFixture, attached: bool, typed: str = SUDO_PW) -> object:
    mocker.patch.object(sys.stdin, "isatty", return_value=attached)
    return mocker.patch.object(getpass, "getpass", return_value=typed)


# -- where the sudo password comes from -------------------------------------------------------


def test_the_variable_wins_and_nobody_is_asked(monkeypatch: pytest.MonkeyPatch,
                                               mocker: MockerFixture) -> None:
    monkeypatch.setenv(ENV, SUDO_PW)
    ask = _terminal(mocker, attached=True)
    assert sudo_password(ENV, "ops") == SUDO_PW
    ask.assert_not_called()  # type: ignore[attr-defined]


def test_without_a_terminal_nobody_is_asked(mocker: MockerFixture) -> None:
    ask = _terminal(mocker, attached=False)
    assert sudo_password(ENV, "ops") is None
    ask.assert_not_called()  # type: ignore[attr-defined]


def test_on_a_terminal_the_operator_is_asked_once_for_every_host(mocker: MockerFixture) -> None:
    ask = _terminal(mocker, attached=True)
    answers: list[str | None] = []
    threads = [threading.Thread(target=lambda: answers.append(sudo_password(ENV, "ops")))
               for _ in range(6)]  # hosts are probed in parallel
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [SUDO_PW] * 6
    ask.assert_called_once()  # type: ignore[attr-defined]
    prompt = ask.call_args.args[0]  # type: ignore[attr-defined]
    assert ENV in prompt and "ops" in prompt


def test_an_empty_answer_or_end_of_input_is_no_password(mocker: MockerFixture) -> None:
    _terminal(mocker, attached=True, typed="")
    assert sudo_password(ENV, "ops") is None
    mocker.patch.object(getpass, "getpass", side_effect=EOFError)
    assert sudo_password(ENV, "ops") is None
    assert ssh._TYPED_PASSWORDS == {}


# -- how it travels -------------------------------------------------------------------------


@pytest.fixture
def sudo_inv(variant: Callable[..., Inventory]) -> Inventory:
    """The example inventory as non-root `ops` whose sudo needs the password in $ENV."""
    return variant(HOSTS_EXAMPLE, ('user = "root"',
                                   f'user = "ops"\nsudo = true\nsudo_password_env = "{ENV}"'))


def _transport(inv: Inventory, mocker: MockerFixture, probe_status: int,
               command_stderr: bytes = b"") -> tuple[SshTransport, list[tuple[str, bytes]]]:
    """A transport whose session channels are never opened and whose `_exec_on` records
    (command, stdin) instead of running it."""
    sent: list[tuple[str, bytes]] = []

    def fake_exec(channel: object, name: str, command: str, stdin: bytes | None,
                  timeout: float | None) -> tuple[int, bytes, bytes]:
        sent.append((command, stdin or b""))
        if command == "sudo -n true":
            return probe_status, b"", b"sudo: a password is required\n" if probe_status else b""
        return (1 if command_stderr else 0), b"out", command_stderr

    transport = SshTransport(inv.ssh, list(inv.nodes))
    mocker.patch.object(transport, "_channel", return_value=None)
    mocker.patch.object(transport, "_exec_on", side_effect=fake_exec)
    return transport, sent


def test_the_password_goes_on_stdin_never_on_the_command_line(
        sudo_inv: Inventory, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture) -> None:
    monkeypatch.setenv(ENV, SUDO_PW)
    transport, sent = _transport(sudo_inv, mocker, probe_status=1)
    host = sudo_inv.balancers[0].name
    result = transport.run(host, "cat > /etc/x", stdin=b"payload\n")
    assert result.exited == 0
    transport.run(host, "true")
    assert [c for c, _ in sent].count("sudo -n true") == 1  # probed once per host
    commands = [(c, i) for c, i in sent if c != "sudo -n true"]
    assert commands[0] == (wrap("cat > /etc/x", True, with_password=True),
                           SUDO_PW.encode() + b"\npayload\n")
    assert commands[0][0].startswith("sudo -S -k -p '' -- sh -c ")
    assert all(SUDO_PW not in command for command, _ in sent)


def test_passwordless_sudo_gets_no_password_even_when_one_is_set(
        sudo_inv: Inventory, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture) -> None:
    monkeypatch.setenv(ENV, SUDO_PW)
    transport, sent = _transport(sudo_inv, mocker, probe_status=0)
    transport.run(sudo_inv.balancers[0].name, "true", stdin=b"x")
    assert sent[-1] == (wrap("true", True), b"x")


def test_no_password_and_no_terminal_fails_naming_the_variable(
        sudo_inv: Inventory, mocker: MockerFixture) -> None:
    ask = _terminal(mocker, attached=False)
    transport, sent = _transport(sudo_inv, mocker, probe_status=1)
    host = sudo_inv.balancers[0].name
    with pytest.raises(TransportError) as caught:
        transport.run(host, "touch /etc/changed")
    message = str(caught.value)
    assert ENV in message and "ssh.sudo_password_env" in message and "'ops'" in message
    assert [c for c, _ in sent] == ["sudo -n true"]  # nothing else reached the host
    ask.assert_not_called()  # type: ignore[attr-defined]


def test_a_wrong_password_is_reported_as_such(
        sudo_inv: Inventory, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture) -> None:
    monkeypatch.setenv(ENV, SUDO_PW)
    transport, _ = _transport(sudo_inv, mocker, probe_status=1,
                              command_stderr=b"Sorry, try again.\n"
                              b"sudo: 1 incorrect password attempt\n")
    with pytest.raises(TransportError) as caught:
        transport.run(sudo_inv.balancers[0].name, "true")
    assert "refused the password" in str(caught.value) and ENV in str(caught.value)
    assert SUDO_PW not in str(caught.value)


# -- files that hold secrets ------------------------------------------------------------------


def test_every_pushed_file_holding_a_secret_is_unreadable_by_other_users(
        variant: Callable[..., Inventory], monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by content, not by name: a new secret-bearing file cannot slip through."""
    inv = variant(COLOCATED, ("script_weight = 10",
                              'script_weight = 10\nauth_password_env = "HADEPLOY_VRRP_PW"'))
    secrets = {"HADEPLOY_STATS_PASSWORD": "stats-Secret-1", "HADEPLOY_VRRP_PW": "vrrp-S1"}
    holding: set[str] = set()
    for step in build_lb_runbook(inv).steps:
        for host, ops in step.ops.items():
            context = HostContext(inv.node(host), profile_for("el7"), "run1", step.id, secrets)
            for op in ops:
                if not isinstance(op, FileContent):
                    continue
                raw = op.content_for(context)
                content = raw.decode() if raw is not None else ""
                if any(value in content for value in secrets.values()):
                    holding.add(op.path)
                    mode = int(op.mode, 8)
                    assert op.owner == "root" and mode & 0o007 == 0, (op.path, op.mode)
                    assert mode & 0o070 in (0, 0o040), (op.path, op.mode)  # group: read only
    assert holding == {"/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"}


def _sh(script: str, umask: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["/bin/sh", "-c", f"umask {umask:03o}\n{script}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_atomic_write_temp_file_is_owner_only_while_the_content_arrives(
        tmp_path: Path, umask: int) -> None:
    target, backup = tmp_path / "etc" / "haproxy.cfg", tmp_path / "bk" / "r1" / "s" / "h.cfg"
    target.parent.mkdir()
    target.write_text("old\n")
    target.chmod(0o640)
    process = _sh(atomic_write(str(target), USER, GROUP, "0640", str(backup), None,
                               content=b"stats auth admin:half-written-secret\nrest\n"), umask)
    assert process.stdin is not None
    process.stdin.write(b"stats auth admin:half-written-secret\n")
    process.stdin.flush()
    deadline = time.monotonic() + 30
    temps: list[Path] = []
    while not temps and time.monotonic() < deadline:  # the script is still reading stdin
        temps = list(target.parent.glob(".hadeploy.*"))
        time.sleep(0.01)
    assert len(temps) == 1, "the temp file never appeared"
    assert stat.S_IMODE(temps[0].stat().st_mode) == 0o600
    _, err = process.communicate(b"rest\n", timeout=30)
    assert process.returncode == 0, err
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert list(target.parent.glob(".hadeploy.*")) == []
    # every backup directory the script created is 0700; the backup keeps the file's mode
    for level in (tmp_path / "bk", tmp_path / "bk" / "r1", backup.parent):
        assert stat.S_IMODE(level.stat().st_mode) == 0o700, level
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["umask-000", "umask-022"])
def test_workstation_state_is_owner_only_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        store = RunStore(tmp_path / "inventory dir" / ".hadeploy")
        journal = Journal(store.journal_path("r1"), "r1", "lb", "deploy", "hosts.toml", "fp",
                          1.0)
        # a stale temp file of a dead process with the same pid, created world-readable
        make_private_dir(store.runs)
        stale = journal.path.with_name(f".{journal.path.name}.{os.getpid()}.tmp")
        stale.write_text("stale")
        stale.chmod(0o644)
        journal.save()
        store.lock()
        store.unlock()
        log = EventLog(store.dir / "events.log", Redactor())
        log(Event("run-started", "r1"))
        log.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.runs.stat().st_mode) == 0o700
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((store.dir / "events.log").stat().st_mode) == 0o600
    assert not stale.exists()


def test_private_dirs_are_0700_at_every_level_created(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        make_private_dir(tmp_path / "a" / "b" / "c")
        write_atomic(tmp_path / "x" / "y" / "file.json", b"{}")
    finally:
        os.umask(old)
    for level in ("a", "a/b", "a/b/c", "x", "x/y"):
        assert stat.S_IMODE((tmp_path / level).stat().st_mode) == 0o700, level
    assert stat.S_IMODE((tmp_path / "x" / "y" / "file.json").stat().st_mode) == 0o600


def test_the_lock_makes_a_too_open_state_directory_private(tmp_path: Path) -> None:
    state = tmp_path / ".hadeploy"
    state.mkdir()
    state.chmod(0o755)
    store = RunStore(state)
    store.lock()
    store.unlock()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_an_events_log_left_world_readable_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "events.log"
    path.write_text('{"event": "old"}\n')
    path.chmod(0o644)
    log = EventLog(path, Redactor())
    log(Event("run-started", "r1"))
    log.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[0] == '{"event": "old"}'
