"""The `lab` fixture: six simulated hosts (lb1-lb3, ctl1-ctl3 at 198.18.0.11-.16), brought up
once per test session and always torn down at the end, also on failure, Ctrl-C or SIGTERM.

Tests using it need root; without root they are skipped.

The hosts' offline apt repository holds haproxy/keepalived and the OpenStack packages an
original controller needs (lab.openstack.LAB_REPO_PACKAGES) and guide 2's supporting
services (lab.openstack.supporting.SUPPORT_PACKAGES: MariaDB Galera, RabbitMQ, memcached),
~970 .debs downloaded once into the persistent cache; a cached repository costs Lab.up
nothing measurable.
If they cannot be downloaded (no network and no cache), or HADEPLOY_LAB_OPENSTACK=0, the
lab is built without them and tests marked `openstack` are skipped, saying why.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Iterator

import pytest

from lab import DEFAULT_REPO_PACKAGES, Lab, ensure_repo, lab_lock
from lab.errors import LabError
from lab.openstack import LAB_REPO_PACKAGES
from lab.openstack.supporting import SUPPORT_PACKAGES
from tests.lab.helpers import OPENSTACK_UNAVAILABLE

LAB_HOSTS = ("lb1", "lb2", "lb3", "ctl1", "ctl2", "ctl3")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "openstack: lab tests that need Debian's OpenStack packages in the lab's "
        "offline repository (skipped when they cannot be downloaded)")


def _repo_packages() -> tuple[str, ...]:
    """LAB_REPO_PACKAGES if they can be had, else the defaults (and say why in the list)."""
    if os.environ.get("HADEPLOY_LAB_OPENSTACK", "1") == "0":
        OPENSTACK_UNAVAILABLE.append("HADEPLOY_LAB_OPENSTACK=0")
        return DEFAULT_REPO_PACKAGES
    # guide 2's supporting services (Galera, RabbitMQ, memcached) come with them
    packages = (*LAB_REPO_PACKAGES, *SUPPORT_PACKAGES)
    try:
        ensure_repo(packages)
    except LabError as err:
        OPENSTACK_UNAVAILABLE.append(f"OpenStack packages unavailable: {err}")
        return DEFAULT_REPO_PACKAGES
    return packages


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A running lab of six bare Debian hosts; see lab."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts, veths)")
    state_dir = tmp_path_factory.mktemp("lab")
    with lab_lock():
        # SIGTERM (a CI timeout) would otherwise kill pytest without running finalizers.
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        the_lab = Lab.up(LAB_HOSTS, state_dir, repo_packages=_repo_packages())
        atexit.register(the_lab.down)
        try:
            yield the_lab
        finally:
            the_lab.down()
            atexit.unregister(the_lab.down)
            signal.signal(signal.SIGTERM, previous)

