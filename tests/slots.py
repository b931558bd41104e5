"""Which lab slot a pytest-xdist worker uses (see tests/conftest.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

WORKER = re.compile(r"gw(\d+)")


def worker_slot(environ: Mapping[str, str]) -> int | None:
    """BASE+K for xdist worker gwK (BASE: HADEPLOY_LAB_SLOT, default 0); None outside xdist.
    A slot past 9 is left for `lab.network.lab_slot` to refuse, naming the variable."""
    match = WORKER.fullmatch(environ.get("PYTEST_XDIST_WORKER", ""))
    if match is None:
        return None
    base = environ.get("HADEPLOY_LAB_SLOT", "0")
    return (int(base) if base.isdigit() else 0) + int(match.group(1))


#: OpenStack modules that run with the other lab modules rather than with the OpenStack
#: ones, so that the two workers take about as long. In the CI run of 2026-12-04 00:08
#: (28:07 in all, 1669 passed) the OpenStack worker ran test_deploy_controllers in 6.9 min,
#: the full plane's module in 12.2 and test_live_changes in 5.7; the lab worker ran the
#: co-located whole plane, the other lab modules and test_controller_kill_points (one point
#: with its setup: 5.5 min).
BESIDE_THE_LB_MODULES = frozenset({"tests/lab/test_colocated_full_plane.py",
                                   "tests/lab/test_controller_kill_points.py"})


def work_unit(nodeid: str, openstack: bool) -> str:
    """The xdist work unit of a test: `openstack` for the modules that use an OpenStack
    original (one worker runs them one after another), `lab` for the other lab modules and
    those BESIDE_THE_LB_MODULES (the other worker), else its own file."""
    path = nodeid.split("::")[0]
    if openstack and path not in BESIDE_THE_LB_MODULES:
        return "openstack"
    return "lab" if path.startswith("tests/lab/") else path


@functools.cache  # the scheduler asks once per test, for each of a file's tests
def openstack_module(path: str) -> bool:
    """Whether the test file at `path` (from the repository's root) is marked `openstack`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return "pytest.mark.openstack" in handle.read()
    except OSError:
        return False
