"""The demo flow (`invoke demo` without bringing up its own lab) on the session's lab."""

from __future__ import annotations

import sys
import re
from pathlib import Path

import pytest
from rich.console import Console

from hadeploy.demo import CTLS, LBS, STAGES, demo_flow
from hadeploy.lab import Lab
from hadeploy.lab_inventory import LAB_VIP
from tests.lab.helpers import STATS_PASSWORD, vip_holders

pytestmark = [pytest.mark.lab, pytest.mark.openstack]


def test_demo_flow_shows_every_stage(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HADEPLOY_STATS_PASSWORD", STATS_PASSWORD)
    for host in LBS + CTLS:
        lab.hosts[host].reset()
    # The demo's own lines and the tasks' output (which goes to stdout) in one stream.
    console = Console(file=sys.stdout, width=140, no_color=True, force_terminal=False)
    assert demo_flow(console, lab, tmp_path) == 0
    text = capsys.readouterr().out

    positions = [text.find(stage) for stage in STAGES]
    assert -1 not in positions, [s for s, p in zip(STAGES, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    # both phases ran for real, to their last step
    assert "lb.verify" in text.split(STAGES[3])[1].split(STAGES[4])[0]
    assert "ctl.endpoints" in text.split(STAGES[4])[1].split(STAGES[5])[0]
    # verify: the VIP holder, every balancer, haproxy's view of every backend server, all UP
    healthy = text.split(STAGES[5])[1].split(STAGES[6])[0]
    holder = re.search(rf"VIP {re.escape(LAB_VIP)} is held by (lb\d)", healthy)
    assert holder, healthy
    assert "show stat" in healthy and all(h in healthy for h in LBS + CTLS), healthy
    assert "DOWN" not in healthy, healthy
    after = text.split(STAGES[8])[1]
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000" in text
    moved = re.search(r"moved from (lb\d) to (lb\d) in ([\d.]+) s", text)
    assert moved and moved.group(1) == holder.group(1) != moved.group(2), text[-3000:]
    assert f"{holder.group(1)}: haproxy is not running" in after, after
    assert vip_holders(lab, LBS, LAB_VIP) == [moved.group(2)]
    assert STATS_PASSWORD not in text
