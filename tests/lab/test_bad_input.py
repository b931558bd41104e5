"""Bad input through the CLI, against the lab's real sshd: each mistake an operator makes
gives one short error naming the host (or file) and the fix, a non-zero exit code, and never
a Python traceback.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from lab import Lab
from lab.network import SUBNET
from tests.lab.helpers import LBS, hadeploy, inventory_variant

pytestmark = pytest.mark.lab

UNROUTED = f"{SUBNET}.250"  # inside the lab network, but no host answers there


def _assert_clean(run: subprocess.CompletedProcess[str], *needles: str) -> str:
    output = run.stdout + run.stderr
    print(output)
    assert run.returncode != 0, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, f"{needle!r} missing from:\n{output}"
    return output


def test_missing_inventory_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "hosts.toml"
    run = hadeploy("deploy-lb", "--hosts", str(missing), "--dry-run", timeout=60)
    _assert_clean(run, str(missing), "hosts.example.toml")
    assert run.returncode == 2


def test_unreachable_host_fails_within_the_connect_timeout(lab: Lab, tmp_path: Path) -> None:
    for host in LBS:
        lab.hosts[host].reset()
    inventory = inventory_variant(lab, tmp_path,
                                  addresses={"lb3": UNROUTED})  # connect_timeout = 5.0
    started = time.monotonic()
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--yes", timeout=120)
    took = time.monotonic() - started
    output = _assert_clean(run, "lb3", UNROUTED, "Check that the host is up")
    assert run.returncode == 1
    assert "--resume" not in output  # nothing ran, so there is nothing to resume
    print(f"unreachable host reported after {took:.1f} s")
    assert took < 5.0 + 3.0, f"took {took:.1f} s with connect_timeout = 5 s"


def test_wrong_identity_key(lab: Lab, tmp_path: Path) -> None:
    key = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    inventory = inventory_variant(lab, tmp_path, identity=key)
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run", timeout=120)
    _assert_clean(run, "lb1", "authentication failed", "ssh.identity", "authorized_keys")


def test_missing_identity_file(lab: Lab, tmp_path: Path) -> None:
    inventory = inventory_variant(lab, tmp_path, identity=tmp_path / "no_such_key")
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run", timeout=120)
    _assert_clean(run, "no_such_key", "ssh.identity")
    assert run.returncode == 2  # refused while validating, before any connection


def test_missing_known_hosts_file(lab: Lab, tmp_path: Path) -> None:
    missing = tmp_path / "no_known_hosts"
    inventory = inventory_variant(lab, tmp_path, known_hosts=missing)
    for args in (("deploy-lb", "--yes"), ("deploy-lb", "--dry-run"), ("verify",)):
        run = hadeploy(*args, "--hosts", str(inventory), timeout=120)
        _assert_clean(run, str(missing), "ssh.known_hosts", "accept-new", "nothing was run")
        assert run.returncode == 2, args


def test_host_not_in_known_hosts(lab: Lab, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(lab.known_hosts.read_text().replace("lb2,", "lbX,")
                     .replace(f",{lab.hosts['lb2'].address} ", f",{SUBNET}.254 "))
    inventory = inventory_variant(lab, tmp_path, known_hosts=known)
    run = hadeploy("deploy-lb", "--hosts", str(inventory), "--dry-run", timeout=120)
    _assert_clean(run, "lb2", "accept-new", "ssh-keyscan", str(known))
