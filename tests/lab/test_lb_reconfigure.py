"""deploy-lb run again after an inventory change, on live balancers (a sudo user, as operators
run it): a new keepalived.conf is reloaded in place, so the VIP stays where it is unless the new
priorities elect another node, and then it moves once, as the plan said beforehand."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from types import TracebackType

import pytest

from lab import Lab
from lab.inventory import LAB_VIP
from tests.lab.helpers import (
    LBS,
    clean_deploy,
    hadeploy,
    one_holder,
    pidfile_pid,
    vip_holders,
    wait_for,
)

pytestmark = pytest.mark.lab

KEEPALIVED_PID = "/run/keepalived.pid"


class VipWatch:
    """Records which balancers hold the VIP, every ~0.1 s, while a run goes on; `holders`
    keeps each change of the set, in order."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.holders: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            seen = vip_holders(self.lab, LBS, LAB_VIP)
            if not self.holders or self.holders[-1] != seen:
                self.holders.append(seen)
            time.sleep(0.1)

    def __enter__(self) -> VipWatch:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()


def running_config(lab: Lab, host: str) -> str:
    """keepalived's configuration as the running daemon holds it (its SIGUSR1 dump)."""
    h = lab.hosts[host]
    h.exec("rm -f /tmp/keepalived.data; kill -USR1 \"$(cat /run/keepalived.pid)\"")
    return wait_for(lambda: h.exec("cat /tmp/keepalived.data 2>/dev/null || true").stdout,
                    f"keepalived's dump on {host}", seconds=10)


def test_a_changed_keepalived_setting_is_reloaded_and_the_vip_never_moves(
        lab: Lab, tmp_path: Path) -> None:
    inventory = clean_deploy(lab, tmp_path)
    before = {h: pidfile_pid(lab, h, KEEPALIVED_PID) for h in LBS}
    assert all(before.values()), before
    text = inventory.read_text()
    assert "script_interval = 1\n" in text
    inventory.write_text(text.replace("script_interval = 1\n", "script_interval = 2\n"))

    with VipWatch(lab) as watch:
        again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
    assert again.returncode == 0, again.stdout + again.stderr
    # A restart of the holder would have handed the VIP to lb2 and taken it back.
    assert watch.holders == [["lb1"]], watch.holders
    for host in LBS:
        conf = lab.hosts[host].exec(["cat", "/etc/keepalived/keepalived.conf"]).stdout
        assert "    interval 2\n" in conf
        # the same daemon, running the new configuration
        assert pidfile_pid(lab, host, KEEPALIVED_PID) == before[host]
        assert re.search(r"^ *Interval = 2 sec$", running_config(lab, host), re.M), host
    assert one_holder(lab) == ["lb1"]


def swap_priorities(text: str, a: str, b: str) -> str:
    """The inventory's text with the priorities of balancers `a` and `b` exchanged."""
    entry = r'(name = "{}"\naddress = "[0-9.]+"\npriority = )([0-9]+)'
    pa = re.search(entry.format(a), text)
    pb = re.search(entry.format(b), text)
    assert pa and pb, text
    text = re.sub(entry.format(a), rf"\g<1>{pb.group(2)}", text)
    return re.sub(entry.format(b), rf"\g<1>{pa.group(2)}", text)


def test_new_priorities_move_the_vip_once_as_the_plan_said(lab: Lab, tmp_path: Path) -> None:
    inventory = clean_deploy(lab, tmp_path)
    inventory.write_text(swap_priorities(inventory.read_text(), "lb1", "lb2"))

    plan = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert f"the VIP {LAB_VIP} moves once, from here to lb2" in plan.stdout, plan.stdout
    with VipWatch(lab) as watch:
        again = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes")
        assert again.returncode == 0, again.stdout + again.stderr
        # lb1 reloads last; lb2 takes over at lb1's next advert, maybe after the run ended.
        wait_for(lambda: watch.holders[-1] == ["lb2"], "lb2 alone to hold the VIP")
        time.sleep(3)  # and nothing moves it back
    # One holder at a time went from lb1 to lb2 and never back (while VRRP hands over, both
    # or none may hold it for a moment).
    alone = [h[0] for h in watch.holders if len(h) == 1]
    assert [h for i, h in enumerate(alone) if i == 0 or alone[i - 1] != h] == ["lb1", "lb2"], \
        watch.holders
    assert watch.holders[-1] == ["lb2"], watch.holders
