"""The full control plane's original on ctl1 (lab.openstack.FULL_PLANE), shared by the modules
that scale it out: dedicated balancers (test_full_plane_original.py) and haproxy on the
controllers (test_colocated_full_plane.py). Each module provisions its own original (about
2 minutes once the installation is cached) and resets ctl1 afterwards."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import Lab, ensure_repo
from lab.errors import LabError
from lab.openstack import (
    ADMIN_RC,
    FULL_PLANE,
    FULL_PLANE_REPO_PACKAGES,
    OriginalController,
    host_pss_bytes,
    prepare_new_controller,
    provision_original,
)
from lab.openstack.planes import FULL_PLANE_SERVICES
from tests.lab.helpers import OPENSTACK_UNAVAILABLE

ORIGINAL = "ctl1"
NEW = ("ctl2", "ctl3")
CTLS = (ORIGINAL, *NEW)
#: Service type -> the port and path of its endpoints on the original (packstack's URLs).
CATALOG = {
    "identity": (5000, ""),
    "image": (9292, ""),
    "placement": (8778, ""),
    "compute": (8774, "/v2.1"),
    "network": (9696, ""),
    "volumev3": (8776, "/v3/%(project_id)s"),
    "orchestration": (8004, "/v1/%(tenant_id)s"),
    "cloudformation": (8000, "/v1"),
    "object-store": (8080, "/v1/AUTH_%(project_id)s"),
}
#: What an inventory balances: every API of the full plane.
SERVICES = FULL_PLANE_SERVICES
#: Every port haproxy holds for SERVICES (keystone, glance, placement, nova's API and
#: metadata, neutron, cinder, heat's two, swift, novnc, horizon).
API_PORTS = (5000, 9292, 8778, 8774, 8775, 9696, 8776, 8004, 8000, 8080, 6080, 80)
#: The original's files whose bytes a rollback must give back: every service's tree, the
#: /etc/default files of its daemons, apache's sites and the admin rc file.
ORIGINAL_FILES = ("/etc/keystone /etc/glance /etc/placement /etc/nova /etc/neutron /etc/cinder "
                  "/etc/heat /etc/swift /etc/openstack-dashboard /etc/apache2 /etc/default "
                  f"{ADMIN_RC}")
#: The daemons' main processes (children of the host's init).
DAEMONS = "uwsgi|glance-api|nova-|neutron-|cinder-|heat-|swift-|apache2"
#: What the original shows of its APIs when a phase or a rollback fails there: listeners
#: with their processes, the daemons and how long they have run, the APIs' last log lines.
ORIGINAL_DIAGNOSIS = (
    f"ss -Hltnp | grep -E ':({'|'.join(map(str, API_PORTS))}) '; "
    "ps -eo pid,etimes,stat,args | grep -E '[u]wsgi|[p]lacement|[n]eutron-server|[n]ova-'; "
    "for f in /var/log/placement/*.log /var/log/neutron/neutron-server.log "
    "/var/log/nova/nova-api.log /var/log/nova/nova-api-metadata.log; do "
    "[ -f \"$f\" ] && echo \"== $f\" && tail -n 15 \"$f\"; done; true")
#: Where a test that puts TLS on a VIP leaves its CA, for the CLI to trust.
CA_ON_HOST = "/root/hadeploy-lab-ca.pem"


def original_diagnosis(lab: Lab) -> str:
    """ORIGINAL_DIAGNOSIS run on the original, for a failure message (the lab is gone
    after the module)."""
    return lab.hosts[ORIGINAL].exec(["sh", "-c", ORIGINAL_DIAGNOSIS], check=False).stdout[-6000:]


def full_plane_original(lab: Lab, directory: Path,
                        progress: list[str]) -> Iterator[OriginalController]:
    """Provision ctl1 with the full plane (each progress line printed and kept in
    `progress`), yield it, then reset ctl1 to a bare host. Skips when the plane's packages
    cannot be had. For a module-scoped fixture: `yield from full_plane_original(...)`."""
    if os.environ.get("HADEPLOY_LAB_OPENSTACK", "1") == "0" or OPENSTACK_UNAVAILABLE:
        pytest.skip("; ".join(OPENSTACK_UNAVAILABLE) or "HADEPLOY_LAB_OPENSTACK=0")
    try:
        # The session's repository holds Keystone and Glance; the rest is added here (the
        # hosts see the repository live and the install runs apt-get update).
        ensure_repo(FULL_PLANE_REPO_PACKAGES, lab.cache_dir)
        lab.hosts[ORIGINAL].exec("apt-get -q update >/dev/null")  # the repository as it is now
        prepare_new_controller(lab, ORIGINAL, FULL_PLANE)
    except LabError as err:
        pytest.skip(f"the full plane's packages are unavailable: {err}")

    def shown(line: str) -> None:
        progress.append(line)
        print(line, file=sys.stderr, flush=True)

    try:
        made = provision_original(lab, ORIGINAL, directory, plane=FULL_PLANE, progress=shown)
        pss = host_pss_bytes(lab.hosts[ORIGINAL]) / 2**20
        print(f"\nfull-plane original provisioned: {made.timings} (migrations side by side: "
              f"{made.sync_seconds}), total {sum(made.timings.values()):.0f} s, "
              f"PSS {pss:.0f} MiB")
        yield made
    finally:
        lab.hosts[ORIGINAL].reset()


def openstack(lab: Lab, args: str, input: str | None = None) -> str:
    """Run the openstack CLI on the original with the admin rc file sourced; return stdout.
    Once a VIP terminates TLS for the public endpoints, the CLI trusts the test's CA."""
    result = lab.hosts[ORIGINAL].exec(
        f"if [ -e {CA_ON_HOST} ]; then export OS_CACERT={CA_ON_HOST}; fi; "
        f". {ADMIN_RC} && openstack {args}", check=False, timeout=180, input=input)
    assert result.returncode == 0, result.stderr
    return result.stdout


def openstack_json(lab: Lab, args: str) -> list[dict[str, str]]:
    """`openstack ARGS -f json` on the original, a list of rows."""
    value = json.loads(openstack(lab, f"{args} -f json"))
    assert isinstance(value, list)
    return value


def original_files(lab: Lab) -> str:
    """Path, type, owner, group, mode and sha256 of every file of ORIGINAL_FILES on ctl1."""
    return lab.hosts[ORIGINAL].exec(
        f"find {ORIGINAL_FILES} -printf '%p %y %u %g %m %l\\n' | sort && "
        f"find {ORIGINAL_FILES} -type f -print0 | sort -z | xargs -0 sha256sum").stdout


def daemon_pids(lab: Lab, host: str) -> str:
    """The OpenStack daemons' main processes on `host`, sorted, space-separated."""
    return lab.hosts[host].exec(f"pgrep -P 1 -f '{DAEMONS}' | sort | tr '\\n' ' '",
                                check=False).stdout


def upload_random_image(lab: Lab, name: str, size: int) -> str:
    """Upload `size` random bytes from the original's /root/NAME.raw as image NAME; its id."""
    lab.hosts[ORIGINAL].exec(f"head -c {size} /dev/urandom >/root/{name}.raw")
    image = json.loads(openstack(lab, f"image create {name} --disk-format raw "
                                      f"--container-format bare --file /root/{name}.raw "
                                      "-f json"))
    return str(image["id"])
