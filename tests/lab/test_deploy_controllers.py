"""deploy-controllers end to end: a real Keystone + Glance original scaled out behind the VIP."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lab import Lab
from lab.demo import STAGES, demo_flow
from lab.inventory import LAB_VIP
from lab.openstack import OriginalController
from tests.lab.helpers import (
    CTLS,
    LBS,
    RC,
    ROOT,
    STATS_PASSWORD,
    backup_audit,
    backup_levels,
    events,
    hadeploy,
    installed,
    openstack_cli,
    tree_manifest,
    vip_holders,
    wait_for,
)

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

NEW = ("ctl2", "ctl3")
def _present(lab: Lab, host: str) -> list[str]:
    """Which of the service trees exist on a host."""
    return [p for p in ("/etc/keystone", "/etc/glance")
            if lab.hosts[host].exec(["test", "-e", p], check=False).returncode == 0]


CLEAN_END_STATE: dict[str, list[str]] = {}


def _end_state(lab: Lab) -> dict[str, list[str]]:
    """Manifests (type, owner, group, mode, link, sha256) of the service trees and rc file."""
    state = {f"{h}:{p}": tree_manifest(lab, h, p) for h in CTLS
             for p in ("/etc/keystone", "/etc/glance")}
    state["rc"] = lab.hosts["ctl1"].exec(f"sha256sum {RC}").stdout.split()[:1]
    return state


def _pids(lab: Lab, host: str) -> str:
    """The daemons' main processes (children of the host's init; workers may be recycled)."""
    return lab.hosts[host].exec("pgrep -P 1 -f 'uwsgi|glance-api' | sort | tr '\\n' ' '").stdout


def _endpoint_commands(inventory: Path, kind: str) -> list[dict[str, object]]:
    """The remote commands of step ctl.endpoints on the original in the runs of `kind`
    (deploy, or rollback: its undo), from the events log the runs leave beside the journal."""
    log = (inventory.parent / ".hadeploy" / "events.log").read_text()
    return [e for e in events(log) if e["event"] == "command" and e["host"] == "ctl1"
            and e["step"] == "ctl.endpoints"
            and str(e["run_id"]).endswith(f"-controllers-{kind}")]


def _endpoint_records(inventory: Path) -> list[dict[str, Any]]:
    """What the deploy runs journaled for step ctl.endpoints on the original."""
    runs = sorted((inventory.parent / ".hadeploy" / "runs").glob("*-controllers-deploy.json"))
    return [change["record"] for path in runs for step in json.loads(path.read_text())["steps"]
            if step["id"] == "ctl.endpoints" for change in step["hosts"]["ctl1"]["changes"]]


DEMO_TEXT: list[str] = []
Deployed = tuple[Lab, Path, OriginalController, dict[str, list[str]]]
@pytest.fixture(scope="module")
def deployed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The demo's flow (invoke demo without its own lab): provision the original, deploy-lb,
    deploy-controllers as the non-root sudo user, verify, kill haproxy on the VIP holder."""
    for host in LBS + CTLS:
        lab.hosts[host].reset()
    before = {h: _present(lab, h) for h in NEW}
    state = tmp_path_factory.mktemp("controllers")
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):  # anything printed to stdout joins the demo text
        result = demo_flow(Console(file=shown, width=140, no_color=True), lab, state)
    DEMO_TEXT.append(shown.getvalue())
    assert result.code == 0, shown.getvalue()[-5000:]
    CLEAN_END_STATE.update(_end_state(lab))
    return lab, result.inventory, result.original, before


def test_demo_flow_showed_every_stage(deployed: Deployed) -> None:
    lab, _, original, _ = deployed
    (text,) = DEMO_TEXT
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
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000" in text
    after = text.split(STAGES[8])[1]
    moved = re.search(r"moved from (lb\d) to (lb\d) in ([\d.]+) s", text)
    assert moved and moved.group(1) == holder.group(1) != moved.group(2), text[-3000:]
    assert f"{holder.group(1)}: haproxy is not running" in after, after
    assert vip_holders(lab, LBS, LAB_VIP) == [moved.group(2)]
    assert STATS_PASSWORD not in text and original.admin_password not in text


def test_backups_are_owner_only_at_every_level(deployed: Deployed) -> None:
    lab, inventory = deployed[0], deployed[1]
    levels = backup_levels(inventory)
    for host in NEW:  # the copy swapped the packages' trees out: their backups are there
        assert any(level.endswith("/ctl.glance.copy/etc") for level in levels[host]), host
    # every level made for a backup is 0700 root:root, and no directory or file below the
    # backup root can be read by another user, on every host after both phases
    assert backup_audit(lab, inventory, LBS + CTLS) == {h: [] for h in LBS + CTLS}


def test_each_host_keeps_the_records_of_its_own_runs_only(deployed: Deployed) -> None:
    """The controllers phase drains on the balancers, but changes nothing there: no balancer
    keeps a record of it (a controller's record once rode along with its drain commands)."""
    lab = deployed[0]
    listing = "ls /var/lib/hadeploy/runs/ | grep -c -- '-controllers-.*\\.json$' || true"
    kept = {host: lab.hosts[host].exec(["sh", "-c", listing]).stdout.strip()
            for host in LBS + CTLS}
    assert all(kept[h] == "0" for h in LBS) and all(kept[h] != "0" for h in CTLS), kept


def test_token_through_the_vip_and_every_backend(deployed: Deployed) -> None:
    lab, _, _, _ = deployed
    token = openstack_cli(lab, "ctl1", "token issue -f value -c id",
                          auth_url=f"http://{LAB_VIP}:5000/v3").strip()
    assert token
    for host in CTLS:
        address = lab.hosts[host].address
        request = urllib.request.Request(
            f"http://{address}:5000/v3/auth/tokens",
            headers={"X-Auth-Token": token, "X-Subject-Token": token})
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200, host
        assert openstack_cli(lab, "ctl1", "token issue -f value -c id",
                             auth_url=f"http://{address}:5000/v3").strip()


def test_glance_through_the_vip_and_catalog_on_the_vip(deployed: Deployed) -> None:
    lab, inventory, _, _ = deployed
    try:
        with urllib.request.urlopen(f"http://{LAB_VIP}:9292/", timeout=10) as reply:
            status = reply.status
    except urllib.error.HTTPError as answer:  # Glance lists its API versions with a 300
        status = answer.code
    assert status in (200, 300)
    endpoints = json.loads(openstack_cli(lab, "ctl1", "endpoint list -f json"))
    assert endpoints
    assert all(f"//{LAB_VIP}:" in e["URL"] for e in endpoints), endpoints
    assert openstack_cli(lab, "ctl1", "image list -f value") is not None
    # The whole catalog moved in one command, one python3 process, and the journal says
    # which endpoints it moved: all it listed, in order, identity's public endpoint last.
    (move,) = _endpoint_commands(inventory, "deploy")
    assert move["command"] == (f"PATCH {len(endpoints)} endpoint URL(s) -> {LAB_VIP} in one "
                               f"python3 process (credentials from {RC})"), move
    (record,) = _endpoint_records(inventory)
    assert record["moved"] == [e["id"] for e in record["old"]], record
    last = next(e for e in endpoints if e["ID"] == record["moved"][-1])
    assert (last["Service Type"], last["Interface"]) == ("identity", "public"), last


def test_trees_copied_with_owners_modes_and_host_keys(deployed: Deployed) -> None:
    lab, _, _, _ = deployed
    for path in ("/etc/keystone", "/etc/glance"):
        source = tree_manifest(lab, "ctl1", path)
        for host in NEW:
            copy = tree_manifest(lab, host, path)
            differing = sorted(set(source) ^ set(copy))
            # Only checksums of the files whose host-specific keys were rewritten differ.
            assert all(line.endswith("glance-api.conf") for line in differing), differing
    for host in NEW:
        conf = lab.hosts[host].exec("cat /etc/glance/glance-api.conf").stdout
        assert f"bind_host = {lab.hosts[host].address}" in conf
    conf = lab.hosts["ctl1"].exec("cat /etc/glance/glance-api.conf").stdout
    assert f"www_authenticate_uri = http://{LAB_VIP}:5000" in conf
    assert f"auth_url = http://{LAB_VIP}:5000" in conf
    rc = lab.hosts["ctl1"].exec(f"cat {RC}").stdout
    assert f"OS_AUTH_URL=http://{LAB_VIP}:5000/v3" in rc


def test_rerun_changes_and_restarts_nothing(deployed: Deployed) -> None:
    lab, inventory, _, _ = deployed
    pids = {h: _pids(lab, h) for h in CTLS}
    again = hadeploy("deploy-controllers", "--hosts", str(inventory), "--yes", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "host-changed" not in [e["event"] for e in events(again.stdout)]
    assert {h: _pids(lab, h) for h in CTLS} == pids


def test_secrets_never_leave_the_original(deployed: Deployed) -> None:
    _, inventory, original, _ = deployed
    state = inventory.parent / ".hadeploy"
    for path in state.rglob("*"):
        if path.is_file():
            assert original.admin_password not in path.read_text(errors="replace"), path


#: A file the sshd test adds to the original's /etc/keystone (and removes after): the next
#: deploy-controllers copies the tree again without reinstalling a package.
ADDED = "hadeploy-lab-resume.conf"


def _without_added(state: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: [line for line in v if f"./{ADDED}" not in line] for k, v in state.items()}


def test_sshd_of_a_new_controller_dies_during_the_copy_then_resume(deployed: Deployed) -> None:
    """A file added to the original's /etc/keystone makes the next run copy the tree again;
    ctl3's sshd dies mid-copy, the run fails naming it, one --resume ends as a clean run
    does, with the file on every controller (owner, mode, checksum as on the original)."""
    lab, inventory, _, _ = deployed
    added = f"/etc/keystone/{ADDED}"
    lab.hosts["ctl1"].exec(f"printf '# hadeploy lab: resume probe\\n' > {added} && "
                           f"chown root:keystone {added} && chmod 0640 {added}")
    runs = inventory.parent / ".hadeploy" / "runs"
    known = set(runs.glob("*.json"))
    process = subprocess.Popen(
        [sys.executable, "-m", "hadeploy", "deploy-controllers", "--hosts", str(inventory),
         "--yes"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL)
    try:
        def copying() -> bool:
            for path in set(runs.glob("*.json")) - known:
                data = json.loads(path.read_text())
                for step in data["steps"]:
                    if step["id"] == "ctl.keystone.copy" and \
                            step["hosts"]["ctl3"]["state"] in ("running", "changed"):
                        return True
            return False

        wait_for(copying, "the copy to ctl3 to start", seconds=900)
        lab.hosts["ctl3"].kill_sshd()
        output, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, output
    assert "ctl3" in output and "ctl.keystone" in output, output
    lab.hosts["ctl3"].start_sshd()
    resumed = hadeploy("deploy-controllers", "--hosts", str(inventory), "--resume", "--yes",
                       timeout=1200)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    end = _end_state(lab)
    assert _without_added(end) == CLEAN_END_STATE
    on_original = [line for line in end["ctl1:/etc/keystone"] if f"./{ADDED}" in line]
    assert len(on_original) == 2, on_original  # its owner, mode and type; its checksum
    for host in NEW:
        assert [line for line in end[f"{host}:/etc/keystone"] if f"./{ADDED}" in line] == \
            on_original, host
    endpoints = json.loads(openstack_cli(lab, "ctl1", "endpoint list -f json"))
    assert all(f"//{LAB_VIP}:" in e["URL"] for e in endpoints), endpoints
    lab.hosts["ctl1"].exec(["rm", added])  # the test's own change (the rollback undoes the copies)


def test_rollback_restores_the_original_and_the_catalog(deployed: Deployed) -> None:
    lab, inventory, original, _ = deployed
    back = hadeploy("rollback", "--phase", "controllers", "--hosts", str(inventory), "--yes",
                    timeout=900)
    assert back.returncode == 0, back.stdout + back.stderr
    endpoints = json.loads(openstack_cli(lab, "ctl1", "endpoint list -f json",
                                         auth_url=original.keystone_url))
    assert all(f"//{original.address}:" in e["URL"] for e in endpoints), endpoints
    (restore,) = _endpoint_commands(inventory, "rollback")  # the whole catalog, one process
    assert restore["command"] == (f"restore {len(endpoints)} endpoint URL(s) from the journal "
                                  "in one python3 process"), restore
    conf = lab.hosts["ctl1"].exec("cat /etc/glance/glance-api.conf").stdout
    assert f"www_authenticate_uri = http://{original.address}:5000" in conf
    rc = lab.hosts["ctl1"].exec(f"cat {RC}").stdout
    assert f"OS_AUTH_URL=http://{original.address}:5000/v3" in rc
    for host in NEW:
        assert not installed(lab, host, "keystone") and not installed(lab, host, "glance-api")
    NEW_AFTER_ROLLBACK.update({h: _present(lab, h) for h in NEW})
    wait_for(lambda: openstack_cli(lab, "ctl1", "token issue -f value -c id").strip(),
             "a token from the original after rollback", seconds=60)


NEW_AFTER_ROLLBACK: dict[str, list[str]] = {}


def test_rollback_leaves_no_service_tree_on_new_controllers(deployed: Deployed) -> None:
    _, _, _, before = deployed
    assert before == NEW_AFTER_ROLLBACK


def test_dry_run_changes_nothing(deployed: Deployed) -> None:
    """After the rollback there is everything to do again: the plan shows it, touches nothing."""
    lab, inventory, original, _ = deployed
    untouched = (_end_state(lab), openstack_cli(lab, "ctl1", "endpoint list -f value -c URL"),
                 [installed(lab, h, "keystone") for h in NEW])
    plan = hadeploy("deploy-controllers", "--hosts", str(inventory), "--dry-run", timeout=600)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert "Plan:" in plan.stdout and "ctl.endpoints" in plan.stdout, plan.stdout
    assert "already done" in plan.stdout or "to change" in plan.stdout
    assert original.admin_password not in plan.stdout + plan.stderr
    assert (_end_state(lab), openstack_cli(lab, "ctl1", "endpoint list -f value -c URL"),
            [installed(lab, h, "keystone") for h in NEW]) == untouched
