"""Test-session wiring shared by unit and lab tests.

`./dev test` runs pytest in two xdist workers: one runs the OpenStack modules one after
another, the other the other lab modules (and one OpenStack module, to even them out),
while both take the unit test files. Every worker brings up its
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
    """Under `--dist loadfile`, the work units of `tests.slots.work_unit`: the OpenStack
    modules in one (one full-plane original at a time, its module fixtures in one process),
    the other lab modules in another, each unit test file in its own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    root = config.rootpath

    class OpenStackInOneWorker(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return work_unit(nodeid, openstack_module(str(root / path)))

    return OpenStackInOneWorker(config, log)
