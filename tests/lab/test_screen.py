"""deploy-lb as a person sees it on a terminal: live step lines, then the final summary.

`python -m hadeploy deploy-lb --yes` runs for real against the lab inside tmux (a real
terminal emulator, 120x50, on a private server socket); the test reads the pane as the
operator would see it, while the run goes and once it has ended.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from hadeploy.live import FRAMES
from hadeploy.runbook import build_lb_runbook
from lab import Lab
from lab.inventory import LAB_VIP, write_lab_inventory
from tests.lab.helpers import CTLS, LBS, ROOT, STATS_PASSWORD, vip_holders

pytestmark = pytest.mark.lab

TMUX = "/usr/bin/tmux"
COLUMNS, ROWS = 120, 50
EXITED = re.compile(r"^\[exit (\d+)\]$", re.MULTILINE)
SPIN = f"[{FRAMES}]"
STEP_LINE = re.compile(r"^(?P<mark>\S) \[(?P<n>\d+)/(?P<total>\d+)\] (?P<id>\S+)  (?P<rest>.*)  "
                       r"(?P<secs>[\d.]+s|\d+m\d\ds)  (?P<changed>\d+) changed, (?P<ok>\d+) ok, "
                       r"(?P<failed>\d+) failed$")
SUMMARY = re.compile(r"^Done \((\d+) changed, (\d+) ok, (\d+) failed\)\. Journal: \S+\.json$",
                     re.MULTILINE)


class Pane:
    """One tmux pane of COLUMNS x ROWS on a private server, running one shell command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        """Run a tmux command against this test's server; its stdout."""
        return subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", *args],
                              check=True, capture_output=True, text=True, timeout=30).stdout

    def screen(self) -> str:
        """The pane as shown (lines the terminal wrapped joined back)."""
        return self.tmux("capture-pane", "-p", "-J", "-t", "screen")


@contextmanager
def terminal(command: list[str]) -> Iterator[Pane]:
    """`command` in a fresh tmux pane; once it ends the pane shows `[exit N]` and stays."""
    pane = Pane(f"hadeploy-screen-{os.getpid()}")
    shell = f'{shlex.join(command)}; echo "[exit $?]"; exec sleep 3600'
    try:
        pane.tmux("new-session", "-d", "-s", "screen", "-x", str(COLUMNS), "-y", str(ROWS),
                  "-c", str(ROOT), shell)
        yield pane
    finally:
        subprocess.run([TMUX, "-L", pane.socket, "kill-server"], capture_output=True,
                       timeout=30, check=False)
        # tmux leaves the socket file of a killed server behind
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / pane.socket).unlink(missing_ok=True)


def test_deploy_lb_on_a_terminal_shows_live_steps_then_the_summary(lab: Lab,
                                                                     tmp_path: Path) -> None:
    for host in LBS:
        lab.hosts[host].reset()
    for host in vip_holders(lab, CTLS, LAB_VIP):  # left holding it by a colocated deploy
        lab.hosts[host].reset()
    inventory = write_lab_inventory(lab, tmp_path / "hosts.toml")
    steps = [s.id for s in build_lb_runbook(load_inventory(inventory)).steps]
    assert steps and all(s.startswith("lb.") for s in steps)
    command = ["env", "-u", "NO_COLOR", "-u", "COLUMNS", "-u", "LINES",
               f"HADEPLOY_STATS_PASSWORD={STATS_PASSWORD}",
               sys.executable, "-m", "hadeploy", "deploy-lb", "--hosts", str(inventory), "--yes"]

    live_seen: list[str] = []  # screens showing a running step with a spinner per host
    with terminal(command) as pane:
        deadline = time.monotonic() + 600
        while not EXITED.search(screen := pane.screen()):
            assert time.monotonic() < deadline, f"deploy-lb did not end:\n{screen}"
            if (re.search(rf"^{SPIN} \[\d+/{len(steps)}\] lb\.", screen, re.MULTILINE)
                    and re.search(rf"^    {SPIN} lb\d  running ", screen, re.MULTILINE)):
                live_seen.append(screen)
            time.sleep(0.1)

    print(f"the screen at the end:\n{screen}\none while running:\n{live_seen[-1:]}")
    exited = EXITED.search(screen)
    assert exited and exited.group(1) == "0", screen
    assert live_seen, "no screen showed a running step with a spinner per running host"
    assert "run so far:" in live_seen[0]
    lines = screen.splitlines()
    # Every step of the runbook stayed on screen, in order, done on every balancer.
    heads = [(i, m) for i, line in enumerate(lines) if (m := STEP_LINE.match(line))]
    assert [m["id"] for _, m in heads] == steps, screen
    for number, (index, head) in enumerate(heads, start=1):
        assert (head["mark"], head["n"], head["total"]) == ("✔", str(number), str(len(steps)))
        hosts = lines[index + 1:index + 1 + len(LBS)]
        states = [re.fullmatch(r"    ✔ (lb\d)  (changed|ok) +(?:[\d.]+s|\d+m\d\ds)", h)
                  for h in hosts]
        assert all(states), f"{head['id']}: {hosts}"
        assert sorted(s[1] for s in states if s) == list(LBS)
        assert [int(head[k]) for k in ("changed", "ok", "failed")] == [
            sum(s[2] == "changed" for s in states if s),
            sum(s[2] == "ok" for s in states if s), 0]
    by_id = {m["id"]: m for _, m in heads}
    assert by_id["lb.preflight"]["ok"] == "3" and by_id["lb.packages"]["changed"] == "3"
    # The closing summary adds up the step lines; nothing live is left on screen.
    summary = SUMMARY.search(screen)
    assert summary, screen
    assert [int(summary[1]), int(summary[2]), int(summary[3])] == [
        sum(int(m["changed"]) for _, m in heads), sum(int(m["ok"]) for _, m in heads), 0]
    assert not any(frame in screen for frame in FRAMES), screen
    assert "run so far:" not in screen and " running " not in screen
    assert STATS_PASSWORD not in screen and not any(STATS_PASSWORD in s for s in live_seen)
