"""The package step leaves nothing behind when its session dies, and takes away the
policy-rc.d guard a dead run left, never the operator's own (the scripts run under /bin/sh,
with the policy-rc.d path moved into a temporary directory)."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from hadeploy.facts import Probe
from hadeploy.facts.system import POLICY_RC, STALE_GUARD_PROBE
from hadeploy.inventory.model import Node
from hadeploy.ops.base import HostContext
from hadeploy.ops.packages import PackagesInstalled, undo_packages
from hadeploy.platforms import Profile, profile_for
from tests.unit.test_ops import ListProfile

OPERATORS = "#!/bin/sh\nexit 0\n"
GLANCE = PackagesInstalled("packages", ("glance-api",), block_service_starts=True)


@dataclass(frozen=True)
class SlowListProfile(ListProfile):
    """Debian whose package database is a text file and whose install takes a moment."""

    def install(self, packages: tuple[str, ...]) -> str:
        return "{ sleep 0.5; " + "; ".join(f"echo {p} >> {self.db}" for p in packages) + "; }"


def ctx(profile: Profile | None = None) -> HostContext:
    return HostContext(Node("ctl2", IPv4Address("198.18.0.22")), profile or profile_for("debian"),
                       "run-1", "ctl.glance.packages")


def moved(script: str, tmp_path: Path) -> tuple[str, Path]:
    """`script` with the policy-rc.d path moved to `tmp_path` (and that path)."""
    policy = tmp_path / "policy-rc.d"
    return script.replace(POLICY_RC, str(policy)), policy


def current(policy: Path) -> str:
    try:
        return policy.read_text()
    except FileNotFoundError:
        return ""


def leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if ".hadeploy-" in p.name)


@pytest.mark.parametrize("how", ["pipe closed", "hang-up"])
def test_a_dying_session_puts_the_operators_policy_back_and_leaves_no_file(
        tmp_path: Path, how: str) -> None:
    db = tmp_path / "db"
    db.write_text("libc6\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    profile = SlowListProfile("debian", "debian", "apt-get", "sysv", db=str(db))
    (command,) = GLANCE.apply(ctx(profile), GLANCE.read(ctx(profile), Probe("")))
    assert "mktemp" not in command.script
    script, policy = moved(command.script, tmp_path)
    policy.write_text(OPERATORS)
    shell = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={"TMPDIR": str(temp),
                                                          "PATH": "/usr/bin:/bin"})
    deadline = time.monotonic() + 20
    while "hadeploy" not in current(policy) and time.monotonic() < deadline:
        time.sleep(0.02)  # (moved aside for an instant while the guard goes in)
    assert "exit 101" in policy.read_text()  # starts blocked while the install runs
    assert shell.stdout is not None and shell.stderr is not None
    if how == "hang-up":
        shell.send_signal(signal.SIGHUP)
    shell.stdout.close()  # the workstation is gone: nobody reads any more
    shell.stderr.close()
    assert shell.wait(timeout=20) != 0
    assert policy.read_text() == OPERATORS
    assert leftovers(tmp_path) == [] and list(temp.iterdir()) == []


def state(tmp_path: Path, current: str | None, saved: str | None) -> Path:
    policy = tmp_path / "policy-rc.d"
    for path, text in ((policy, current), (tmp_path / "policy-rc.d.hadeploy-saved", saved)):
        if text is not None:
            path.write_text(text)
    return policy


GUARD_TEXT = "#!/bin/sh\n# hadeploy: service starts blocked during a package install\nexit 101\n"


@pytest.mark.parametrize(("current", "saved", "stale", "after"), [
    (OPERATORS, None, False, OPERATORS),        # the operator's own: never touched
    (None, None, False, None),
    (GUARD_TEXT, OPERATORS, True, OPERATORS),   # killed during the install
    (GUARD_TEXT, None, True, None),
    (None, OPERATORS, True, OPERATORS),         # killed between moving aside and the guard
    ("#!/bin/sh\nexit 101\n", None, False, "#!/bin/sh\nexit 101\n"),  # looks alike, not ours
])
def test_a_dead_runs_guard_is_recognised_and_taken_away(
        tmp_path: Path, current: str | None, saved: str | None, stale: bool,
        after: str | None) -> None:
    policy = state(tmp_path, current, saved)
    probe_script, _ = moved(STALE_GUARD_PROBE, tmp_path)
    probe = subprocess.run(["/bin/sh", "-c", probe_script], capture_output=True, text=True,
                           check=True)
    seen = GLANCE.read(ctx(), Probe("glance-api\n" + probe.stdout))
    assert seen.stale_guard is stale
    assert GLANCE.done(ctx(), seen) is not stale
    if stale:
        (command,) = GLANCE.apply(ctx(), seen)
        assert command.shown() == f"remove the {POLICY_RC} an interrupted install left"
        script, _ = moved(command.script, tmp_path)
        subprocess.run(["/bin/sh", "-c", script], check=True)
    assert (policy.read_text() if policy.exists() else None) == after
    assert leftovers(tmp_path) == []


def test_the_guard_probe_is_asked_for_only_where_starts_are_blocked() -> None:
    fact = GLANCE.fact(ctx())
    assert fact.command is not None and "hadeploy-saved" in fact.command
    plain = PackagesInstalled("packages", ("haproxy",)).fact(ctx())
    assert plain.command is not None and "hadeploy-saved" not in plain.command
    el = GLANCE.fact(ctx(profile_for("el9")))
    assert el.command is not None and "policy-rc.d" not in el.command


def test_a_rollback_takes_a_dead_runs_guard_away_too(tmp_path: Path) -> None:
    policy = state(tmp_path, GUARD_TEXT, OPERATORS)
    (command,) = undo_packages(ctx(), {"kind": "packages", "requested": ["glance-api"]})
    script, _ = moved(command.script, tmp_path)
    head = script[:script.index("present=")]
    subprocess.run(["/bin/sh", "-c", head], check=True)
    assert policy.read_text() == OPERATORS and leftovers(tmp_path) == []
