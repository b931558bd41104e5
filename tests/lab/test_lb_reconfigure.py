"""deploy-lb run again after an inventory change, on live balancers (a sudo user, as operators
run it): every balancer ends with a new daemon running the new configuration."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lab import Lab
from tests.lab.helpers import LBS, clean_deploy, hadeploy, one_holder, pidfile_pid

pytestmark = pytest.mark.lab

KEEPALIVED_PID = "/run/keepalived.pid"


def test_a_changed_keepalived_setting_restarts_keepalived_everywhere(
        lab: Lab, tmp_path: Path) -> None:
    inventory = clean_deploy(lab, tmp_path)
    before = {h: pidfile_pid(lab, h, KEEPALIVED_PID) for h in LBS}
    assert all(before.values()), before
    text = inventory.read_text()
    assert "script_interval = 1\n" in text
    inventory.write_text(text.replace("script_interval = 1\n", "script_interval = 2\n"))

    again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    # keepalived's init-script restart returns while the old daemon is still stopping: the
    # step must wait for the new daemon, not take the dying one for it
    assert again.returncode == 0, again.stdout + again.stderr
    for host in LBS:
        conf = lab.hosts[host].exec(["cat", "/etc/keepalived/keepalived.conf"]).stdout
        assert "    interval 2\n" in conf
        pid = pidfile_pid(lab, host, KEEPALIVED_PID)
        assert pid and pid != before[host], (host, before[host], pid)
        assert lab.hosts[host].exec(["kill", "-0", str(pid)], check=False).returncode == 0
    assert one_holder(lab) == ["lb1"]
    # and it stays so: nothing was left half-started that dies a moment later
    time.sleep(2)
    for host in LBS:
        pid = pidfile_pid(lab, host, KEEPALIVED_PID)
        assert pid and lab.hosts[host].exec(["kill", "-0", str(pid)], check=False).returncode == 0
