"""The use-case layer and the task edge: refusals happen before any connection is made."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from hadeploy import commands, tasks
from hadeploy.app import Deployment
from hadeploy.errors import HadeployError, InventoryError, JournalError, StepFailed
from hadeploy.events import Event, Listener
from hadeploy.inventory import Inventory
from hadeploy.journal import Journal, RunStore, now, state_dir_for
from hadeploy.outcome import HostOutcome
from hadeploy.redact import Redactor
from hadeploy.transport.base import Transport
from tests.unit.examples import COLOCATED, ROOT


def no_connection(inv: Inventory) -> Transport:
    raise AssertionError("a connection was attempted")


@pytest.fixture
def hosts(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    shutil.copy(ROOT / "hosts.example.toml", path)
    return path


def failed_run(path: Path, fingerprint: str) -> Journal:
    store = RunStore(state_dir_for(str(path)))
    run_id = store.new_run_id("lb", "deploy")
    journal = Journal(store.journal_path(run_id), run_id, "lb", "deploy", str(path),
                      fingerprint, now(), status="failed")
    journal.save()
    return journal


def test_resume_is_refused_when_the_inventory_changed(hosts: Path) -> None:
    failed_run(hosts, "fingerprint-of-an-older-inventory")
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    with pytest.raises(JournalError, match=r"changed since run .* began"):
        deployment.deploy("lb", resume=True)


def test_resume_continues_the_failed_run_of_the_same_inventory(hosts: Path) -> None:
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    journal = failed_run(hosts, deployment.inv.fingerprint)
    assert deployment.journal_for("lb", resume=True).run_id == journal.run_id


def test_resume_without_a_failed_run_says_so(hosts: Path) -> None:
    # (deploy --resume looks for one in the hosts' own records first: tests/lab/test_hoststate)
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    with pytest.raises(JournalError, match="no failed or interrupted lb run to resume"):
        deployment.journal_for("lb", resume=True)


def test_a_missing_secret_is_refused_before_connecting(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "colocated.toml"
    shutil.copy(COLOCATED, path)
    monkeypatch.delenv("HADEPLOY_STATS_PASSWORD", raising=False)
    deployment = Deployment(str(path), transport_factory=no_connection)
    with pytest.raises(InventoryError, match=r"\$HADEPLOY_STATS_PASSWORD is not set"):
        deployment.deploy("lb")
    with pytest.raises(InventoryError, match=r"\$HADEPLOY_STATS_PASSWORD is not set"):
        deployment.plan("lb", offline=False)


def test_a_secret_with_a_newline_is_refused(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "colocated.toml"
    shutil.copy(COLOCATED, path)
    monkeypatch.setenv("HADEPLOY_STATS_PASSWORD", "x\n    stats admin if TRUE")
    deployment = Deployment(str(path), transport_factory=no_connection)
    with pytest.raises(InventoryError, match="control characters"):
        deployment.deploy("lb")


def test_offline_plans_never_connect(hosts: Path) -> None:
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    for phase in ("lb", "controllers"):
        runbook, items = deployment.plan(phase, offline=True)
        assert {item.step.id for item in items} == {s.id for s in runbook.steps}


def test_a_second_run_is_refused_while_the_lock_is_held(hosts: Path) -> None:
    holder = RunStore(state_dir_for(str(hosts)))
    holder.lock()
    try:
        deployment = Deployment(str(hosts), transport_factory=no_connection)
        with pytest.raises(JournalError, match="another hadeploy run holds"):
            deployment.deploy("lb")
        with pytest.raises(JournalError, match="another hadeploy run holds"):
            deployment.rollback("lb")
    finally:
        holder.unlock()


def test_unknown_service_filter_is_refused(hosts: Path) -> None:
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    with pytest.raises(InventoryError, match="--service swift: not a scaled-out service"):
        deployment.plan("controllers", offline=True, only=("swift",))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hadeploy", *args], cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_without_a_terminal_a_real_run_needs_yes(hosts: Path) -> None:
    result = cli("deploy-lb", "--hosts", str(hosts))
    assert result.returncode == 2
    assert "Pass --yes" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_missing_inventory_is_one_clear_error(tmp_path: Path) -> None:
    result = cli("deploy-lb", "--hosts", str(tmp_path / "nope.toml"), "--yes")
    assert result.returncode == 2
    assert "copy hosts.example.toml to hosts.toml" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_status_shows_runs_from_the_journal(hosts: Path) -> None:
    failed_run(hosts, "x")
    result = cli("status", "--hosts", str(hosts))
    assert result.returncode == 0, result.stderr
    assert "lb" in result.stdout and "failed" in result.stdout


def test_task_list_documents_every_task_and_flag() -> None:
    result = cli("--list")
    for name in ("deploy-lb", "deploy-controllers", "rollback", "status", "render", "verify"):
        assert name in result.stdout
    # the lab's tasks are the repository's, not the operator's
    for name in ("demo", "lab-up", "lab-down"):
        assert name not in result.stdout
    repo = subprocess.run([str(Path(sys.executable).parent / "invoke"), "--list"], cwd=ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    for name in ("deploy-lb", "deploy-controllers", "demo", "lab-up", "lab-down"):
        assert name in repo.stdout, repo.stdout + repo.stderr
    help_text = cli("deploy-controllers", "--help").stdout
    for flag in ("--dry-run", "--offline", "--resume", "--yes", "--json", "--service"):
        assert flag in help_text


class UndoSixHostSteps:
    """Stands in for `Deployment` in the rollback task: its rollback undoes two steps on
    three hosts, with the engine's events."""

    def __init__(self, hosts: str) -> None:
        self.listeners: list[Listener] = []
        self.redactor = Redactor()
        self.store = RunStore(state_dir_for(hosts))
        self.hosts = hosts

    def rollback(self, phase: str, break_lock: bool = False) -> Journal:
        for step in ("lb.services", "lb.sysctl"):
            for listener in self.listeners:
                listener(Event("step-started", "rb", f"run-1/{step}", None,
                               {"title": f"undo {step}", "hosts": ["lb1", "lb2", "lb3"]}))
                for host in ("lb1", "lb2", "lb3"):
                    listener(Event("host-rolled-back", "rb", f"run-1/{step}", host))
        run_id = self.store.new_run_id(phase, "rollback")
        return Journal(self.store.journal_path(run_id), run_id, phase, "rollback", self.hosts,
                       "fp", now())


def test_rollback_says_how_many_host_steps_it_undid(hosts: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(commands, "Deployment", UndoSixHostSteps)
    assert commands.rollback(phase="lb", hosts=str(hosts), yes=True) == 0
    out = capsys.readouterr().out
    assert "\nRolled back 6 host-steps. Journal: " in out, out
    assert "0 changed" not in out


def test_resume_refusal_offers_a_new_run(hosts: Path) -> None:
    failed_run(hosts, "fingerprint-of-an-older-inventory")
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    with pytest.raises(JournalError) as refused:
        deployment.deploy("lb", resume=True)
    message = str(refused.value)
    assert "Start a new run without --resume (invoke deploy-lb)" in message
    assert "applies only what differs" in message
    assert "restore the inventory to resume" in message
    assert "invoke rollback --phase lb" in message


def ssh_variant(hosts: Path, **keys: str) -> Path:
    """hosts.example.toml with [ssh] keys added or replaced."""
    lines = [line for line in hosts.read_text().splitlines()
             if line.split(" = ")[0] not in keys]
    at = lines.index("[ssh]") + 1
    lines[at:at] = [f'{key} = "{value}"' for key, value in keys.items()]
    hosts.write_text("\n".join(lines) + "\n")
    return hosts


def test_missing_local_files_are_refused_before_connecting(hosts: Path, tmp_path: Path) -> None:
    ssh_variant(hosts, identity=str(tmp_path / "no_key"), known_hosts=str(tmp_path / "kh"),
                config=str(tmp_path / "ssh_config"))
    deployment = Deployment(str(hosts), transport_factory=no_connection)
    with pytest.raises(InventoryError) as refused:
        deployment.plan("lb", offline=False)
    assert [p.split(":")[0] for p in refused.value.problems] == [
        "ssh.identity", "ssh.known_hosts", "ssh.config"]
    failed_run(hosts, deployment.inv.fingerprint)
    for attempt in (lambda: deployment.deploy("lb"), lambda: deployment.deploy("lb", True),
                    lambda: deployment.rollback("lb"), deployment.verify):
        with pytest.raises(InventoryError, match=r"ssh\.identity: the private key"):
            attempt()
    # the offline plan and render need none of them
    deployment.plan("lb", offline=True)


def test_a_missing_known_hosts_file_exits_2_naming_the_key(hosts: Path, tmp_path: Path) -> None:
    ssh_variant(hosts, known_hosts=str(tmp_path / "known_hosts"))
    result = cli("deploy-lb", "--hosts", str(hosts), "--yes")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "ssh.known_hosts" in result.stderr and str(tmp_path / "known_hosts") in result.stderr
    assert "accept-new" in result.stderr and "Traceback" not in result.stderr
    assert cli("render", "haproxy", "--hosts", str(hosts)).returncode == 0


def test_guard_gives_every_task_the_same_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    def raising(exc: BaseException) -> Callable[[], int]:
        def action() -> int:
            raise exc
        return action

    cases: list[tuple[Callable[[], int], int]] = [
        (lambda: 2, 2),
        (raising(InventoryError("hosts.toml", ["x"])), 2),
        (raising(JournalError("locked")), 2),
        (raising(StepFailed("lb.packages", {"lb1": HostOutcome(
            "lb1", "failed", HadeployError("boom", host="lb1"))})), 1),
        (raising(HadeployError("lost")), 1),
        (raising(KeyboardInterrupt()), 130),
    ]
    for action, code in cases:
        assert commands.guard(action) == code
        with pytest.raises(Exit) as stopped:  # the same, as an invoke task
            tasks.guard(action)
        assert stopped.value.code == code
    assert "error: hosts.toml" in capsys.readouterr().err
    assert commands.guard(lambda: 0) == 0
    tasks.guard(lambda: 0)  # done: no exit raised


@pytest.mark.parametrize("args", [("deploy-lb", "--no-such-flag"), ("no-such-task",),
                                  ("rollback", "--phase")])
def test_a_command_line_that_does_not_parse_exits_2(args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    assert "\nusage: hadeploy " in result.stderr and "Traceback" not in result.stderr
