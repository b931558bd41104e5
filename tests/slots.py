"""Which lab slot a pytest-xdist worker uses (see tests/conftest.py)."""

from __future__ import annotations

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


def work_unit(nodeid: str, openstack: bool) -> str:
    """The xdist group of a test: `openstack` for every module that provisions an OpenStack
    original (one worker runs them one after another), else its own file."""
    return "openstack" if openstack else nodeid.split("::")[0]


def openstack_module(path: str) -> bool:
    """Whether the test file at `path` (from the repository's root) is marked `openstack`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return "pytest.mark.openstack" in handle.read()
    except OSError:
        return False
