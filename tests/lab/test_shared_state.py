"""deploy-controllers and Glance's file store on the lab's real original (the images on the
host's own filesystem, as Debian's glance-api leaves them): without `services.shared_storage`
the run stops at its first step, `ctl.shared-state`, before anything changes on any host,
naming glance-api.conf; confirmed, the step is gone and the run goes on (the lab's default
inventory confirms it: test_deploy_controllers runs such a run to the end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab
from lab.errors import LabError
from lab.inventory import write_lab_inventory
from lab.openstack import OriginalController, prepare_new_controller, provision_original
from tests.lab.helpers import (
    CTLS,
    OPENSTACK_UNAVAILABLE,
    ROOT,
    STATS_PASSWORD,
    events,
    hadeploy,
    installed,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

NEW = ("ctl2", "ctl3")
# Everything a run could change on a controller: every file under /etc (content, owner,
# mode, links), hadeploy's backups, the installed packages, the stored images.
SNAPSHOT = ("find /etc /var/lib/hadeploy /var/lib/glance -xdev "
            "-printf '%p %y %u %g %m %l\\n' 2>/dev/null | sort; "
            "find /etc -xdev -type f -print0 | sort -z | xargs -0 sha256sum; "
            "dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\\n' | sort")
Original = tuple[Lab, OriginalController, Path]


@pytest.fixture(scope="module")
def original(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Original]:
    """ctl1 a real Keystone + Glance original, ctl2 and ctl3 bare new controllers; every
    controller bare again afterwards."""
    try:
        prepare_new_controller(lab, "ctl1")
    except LabError as err:
        pytest.skip("; ".join(OPENSTACK_UNAVAILABLE) or str(err))
    for host in NEW:
        lab.hosts[host].reset()
    state = tmp_path_factory.mktemp("shared-state")
    try:
        yield lab, provision_original(lab, "ctl1", state), state
    finally:
        for host in CTLS:
            lab.hosts[host].reset()


def _snapshot(lab: Lab) -> dict[str, str]:
    return {host: lab.hosts[host].exec(SNAPSHOT, timeout=120).stdout for host in CTLS}


def test_without_confirmation_nothing_changes_and_the_refusal_names_the_store(
        original: Original) -> None:
    lab, ctl, state = original
    (state / "unconfirmed").mkdir()
    inventory = write_lab_inventory(lab, state / "unconfirmed" / "hosts.toml",
                                    shared_storage=(), rc_files=[("ctl1", ctl.admin_rc)])
    before = _snapshot(lab)

    # one service: the plan's verify step waits 90 s for APIs no balancer serves yet
    plan = hadeploy("deploy-controllers", "--hosts", str(inventory), "--dry-run",
                    "--service", "glance")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    shown = plan.stdout.split("ctl.shared-state", 1)[1].split("ctl.packages", 1)[0]
    assert "NOT MET: glance keeps its images on the node that receives them" in shown, shown
    assert ("/etc/glance/glance-api.conf: [glance_store] default_store not set (default "
            "file), [glance_store] filesystem_store_datadir = /var/lib/glance/images on a "
            "local filesystem (") in shown, shown

    run = hadeploy("deploy-controllers", "--hosts", str(inventory), "--yes", "--json")
    said = run.stdout + run.stderr
    assert run.returncode == 1, said
    assert "step ctl.shared-state failed on ctl1" in said
    assert "/etc/glance/glance-api.conf: [glance_store] default_store not set" in said
    assert 'confirm it in the inventory: [services] shared_storage = ["glance"]' in said
    assert "This run changed nothing on any host" in said and "--resume" not in said
    started = [e["step"] for e in events(run.stdout) if e["event"] == "step-started"]
    assert started == ["ctl.shared-state"], started

    assert _snapshot(lab) == before
    assert not any(installed(lab, h, p) for h in NEW for p in ("keystone", "glance-api"))
    (journal,) = (json.loads(p.read_text())
                  for p in (inventory.parent / ".hadeploy" / "runs").glob("*.json"))
    assert journal["status"] == "failed"
    hosts = {(s["id"], h): e for s in journal["steps"] for h, e in s["hosts"].items()}
    assert hosts[("ctl.shared-state", "ctl1")]["state"] == "failed"
    assert all(e["state"] == "pending" and not e["changes"] for k, e in hosts.items()
               if k != ("ctl.shared-state", "ctl1")), journal


def test_confirmed_the_run_goes_on_past_where_the_check_was(original: Original) -> None:
    """With the lab's default inventory (Glance confirmed), the run's first step is the first
    one that changes something; stopped there (SIGTERM), it exits 130 like any stopped run."""
    lab, ctl, state = original
    (state / "confirmed").mkdir()
    inventory = write_lab_inventory(lab, state / "confirmed" / "hosts.toml",
                                    rc_files=[("ctl1", ctl.admin_rc)])
    assert 'shared_storage = ["glance"]' in inventory.read_text()
    process = subprocess.Popen(
        [sys.executable, "-m", "hadeploy", "deploy-controllers", "--hosts", str(inventory),
         "--yes", "--json"], cwd=ROOT,
        env={**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if '"event": "step-started"' in line:
                process.send_signal(signal.SIGTERM)
        process.wait(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
    said = "".join(lines)
    assert process.returncode == 130, said
    started = [e["step"] for e in events(said) if e["event"] == "step-started"]
    assert started == ["ctl.packages"], said
    assert "ctl.shared-state" not in said
