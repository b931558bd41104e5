"""Test-session wiring shared by unit and lab tests.

`./dev test` runs pytest in two xdist workers: one runs the OpenStack modules one after
another, the other every other module, a whole file at a time. Every worker brings up its
own lab (tests/lab/conftest.py), so each needs its own lab slot (HADEPLOY_LAB_SLOT: its
own 198.18.N.0/24, interface and lock). Worker gwK takes slot BASE+K, BASE being the slot the
session was started with (0 by default). This runs before any test module imports `lab`,
which reads the slot once at import.
"""

from __future__ import annotations

import os

import pytest

from tests.slots import work_unit, worker_slot

_slot = worker_slot(os.environ)
if _slot is not None:
    os.environ["HADEPLOY_LAB_SLOT"] = str(_slot)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Work units for `--dist loadgroup`: the modules marked `openstack` form one unit, run one
    after another by one worker (two OpenStack labs provisioning at once on 2 cores failed a
    setup), while the other worker takes every other module, each a unit of its own so that
    its module fixtures stay in one process."""
    for item in items:
        openstack = item.get_closest_marker("openstack") is not None
        item.add_marker(pytest.mark.xdist_group(work_unit(item.nodeid, openstack)))
