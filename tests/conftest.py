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
from typing import Any

import pytest

from tests.slots import openstack_module, work_unit, worker_slot

_slot = worker_slot(os.environ)
if _slot is not None:
    os.environ["HADEPLOY_LAB_SLOT"] = str(_slot)


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which would answer first
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadfile`, the work units: the modules marked `openstack` form one, run
    one after another by one worker (two OpenStack labs provisioning at once on 2 cores
    failed a setup), while the other worker takes every other module, each a unit of its
    own so that its module fixtures stay in one process."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    root = config.rootpath

    class OpenStackInOneWorker(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return work_unit(nodeid, openstack_module(str(root / path)))

    return OpenStackInOneWorker(config, log)
