"""Lab slots: HADEPLOY_LAB_SLOT picks the subnet, interface and lock of a lab (pure parsing)."""

from __future__ import annotations

import pytest

from lab.errors import LabError
from lab.network import SLOT_VARIABLE, lab_slot
from tests.slots import worker_slot


@pytest.mark.parametrize(("raw", "slot"), [(None, 0), ("0", 0), ("3", 3), ("9", 9)])
def test_a_slot_from_0_to_9_is_taken(monkeypatch: pytest.MonkeyPatch, raw: str | None,
                                     slot: int) -> None:
    if raw is None:
        monkeypatch.delenv(SLOT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(SLOT_VARIABLE, raw)
    assert lab_slot() == slot


@pytest.mark.parametrize("raw", ["10", "-1", "a", "", "1.5", " 2"])
def test_anything_else_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch,
                                                      raw: str) -> None:
    monkeypatch.setenv(SLOT_VARIABLE, raw)
    with pytest.raises(LabError, match=f"{SLOT_VARIABLE}=.*expected a number from 0 to 9"):
        lab_slot()


@pytest.mark.parametrize(("environ", "slot"), [
    ({}, None),
    ({"HADEPLOY_LAB_SLOT": "3"}, None),
    ({"PYTEST_XDIST_WORKER": "gw0"}, 0),
    ({"PYTEST_XDIST_WORKER": "gw1"}, 1),
    ({"PYTEST_XDIST_WORKER": "gw1", "HADEPLOY_LAB_SLOT": "3"}, 4),
    ({"PYTEST_XDIST_WORKER": "master"}, None),
])
def test_each_xdist_worker_takes_its_own_slot(environ: dict[str, str],
                                              slot: int | None) -> None:
    assert worker_slot(environ) == slot
