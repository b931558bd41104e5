"""Lab slots: HADEPLOY_LAB_SLOT picks the subnet, interface and lock of a lab (pure parsing)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lab.errors import LabError
from lab.network import SLOT_VARIABLE, lab_slot
from tests.slots import openstack_module, work_unit, worker_slot


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


def test_openstack_modules_share_one_work_unit_every_other_module_has_its_own() -> None:
    assert work_unit("tests/lab/test_full_plane_original.py::test_a[x]", openstack=True) == \
        "openstack"
    assert work_unit("tests/lab/test_deploy_controllers.py::test_a[x]", openstack=True) == \
        "openstack"
    assert work_unit("tests/lab/test_deploy_lb.py::test_b", openstack=False) == "lab"
    assert work_unit("tests/lab/test_live_changes.py::test_1", openstack=True) == \
        "openstack"
    assert work_unit("tests/lab/test_colocated_full_plane.py::test_2", openstack=True) == "lab"
    assert work_unit("tests/lab/test_controller_kill_points.py::test_2", openstack=True) == "lab"
    assert work_unit("tests/unit/test_ops.py::test_c", openstack=False) == \
        "tests/unit/test_ops.py"
    # Every module that uses an original is marked, so that two never run at once.
    lab_tests = Path(__file__).parent.parent / "lab"
    provisioning = sorted(p.stem for p in lab_tests.glob("test_*.py")
                          if "OriginalController" in p.read_text())
    assert {"test_deploy_controllers", "test_full_plane_original"} <= set(provisioning)
    for module in provisioning:
        marks = importlib.import_module(f"tests.lab.{module}").pytestmark
        assert "openstack" in {m.name for m in marks}, module
        assert openstack_module(str(lab_tests / f"{module}.py")), module
    assert not openstack_module(str(lab_tests / "test_deploy_lb.py"))
    assert not openstack_module(str(lab_tests / "no_such_file.py"))
