"""The time-to-HA bench mode's pure parts: step kinds and their seconds from a run's events,
the floor and hadeploy's share, the RESULTS.md section and its in-place replacement."""

from __future__ import annotations

import json
import subprocess
import types
from pathlib import Path

import pytest

from bench.floors import AptFailed
from bench.sections import write_section
from bench.time_to_ha import (
    TimeToHa,
    _install_floor,
    catalog_services,
    phase_restart_script,
    restarted_services,
    step_kind,
    step_seconds,
)
from bench.time_to_ha_report import TIME_TO_HA_SECTION, time_to_ha_section
from hadeploy.inventory import load_inventory
from hadeploy.ops.services import restart_and_wait, stop_then_start
from hadeploy.platforms import profile_for
from lab.openstack.planes import FULL_PLANE_SERVICES
from tests.unit.examples import HOSTS_EXAMPLE


def test_steps_are_grouped_by_what_they_do() -> None:
    assert step_kind("ctl.packages") == "packages"
    assert step_kind("ctl.nova.services") == "services"
    assert {step_kind(f"ctl.swift.{k}") for k in ("vip-keys", "copy", "host-keys",
                                                  "shell-vars", "bind")} == {"copy and edit"}
    assert step_kind("ctl.endpoints") == "endpoints"
    assert step_kind("ctl.rc-files") == "rc-files"
    assert step_kind("facts") == "other"


def test_step_seconds_sum_each_kinds_steps_from_the_events() -> None:
    lines = [json.dumps(e) for e in (
        {"event": "run-started", "time": 0.0},
        {"event": "step-started", "step": "ctl.keystone.packages", "time": 1.0},
        {"event": "step-finished", "step": "ctl.keystone.packages", "time": 11.0},
        {"event": "step-started", "step": "ctl.glance.packages", "time": 12.0},
        {"event": "step-finished", "step": "ctl.glance.packages", "time": 17.5},
        {"event": "step-started", "step": "ctl.endpoints", "time": 20.0},
        {"event": "step-finished", "step": "ctl.endpoints", "time": 22.0},
    )]
    assert step_seconds("banner\n" + "\n".join(lines)) == {"packages": 15.5, "endpoints": 2.0}


def test_the_floor_counts_each_start_once_and_the_originals_restarts_and_the_rest_is_hadeploys(
        ) -> None:
    figures = TimeToHa(packages=40, apt_alone=300.0, apt_runs=[310.0, 300.0],
                       starts={"keystone": 5.0, "nova": 20.0},
                       restarts={"keystone": 6.0, "nova": 29.0}, restarted=["nova"],
                       phase=500.0, steps={"packages": 320.0, "services": 150.0},
                       noop=[6.0, 5.0, 7.0], noop_round_trips=4.0, ssh_floor=[1.0, 2.0, 2.0],
                       noop_hosts=["ctl1", "ctl2", "ctl3"])
    # keystone's config on the original did not change: the phase does not restart it there
    assert figures.floor == 300.0 + 25.0 + 29.0 and figures.own == 146.0
    text = time_to_ha_section(figures, "python bench/run.py --hosts none --time-to-ha", 0.0)
    assert text.startswith(TIME_TO_HA_SECTION)
    assert "**hadeploy's own share** (the rest) | **146.0** | **29 %**" in text
    assert "restarts of the 1 services the phase restarted there (nova) | 29.0 | 6 % |" in text
    assert "| start | 5.0 | 20.0 | 25.0 |" in text and "| restart | 6.0 | 29.0 | 35.0 |" in text
    assert "| restarted on the original by the phase | no | yes | 1 |" in text
    # as a second start only: 500 - (300 + 25 + 20) = 155
    assert "29 %, NOT met" in text and "(no stop, no wait for the old process): 31 %" in text
    assert "(the fastest of 310.0, 300.0) | 300.0 | 60 % |" in text
    assert "6.00 s" in text and "**3.00x** the floor (target 1.5x: NO)" in text
    assert "to the hosts it connected to (ctl1, ctl2, ctl3) at once" in text


def test_the_services_restarted_on_the_original_come_from_the_runs_events() -> None:
    events = [{"event": "host-changed", "host": "ctl1", "step": "ctl.nova.services"},
              {"event": "host-ok", "host": "ctl1", "step": "ctl.keystone.services"},
              {"event": "host-changed", "host": "ctl2", "step": "ctl.glance.services"},
              {"event": "host-changed", "host": "ctl1", "step": "ctl.nova.vip-keys"},
              {"event": "host-changed", "host": "ctl1", "step": "ctl.heat.services"}]
    stdout = "plain line\n" + "".join(json.dumps(e) + "\n" for e in events)
    assert restarted_services(stdout) == ["nova", "heat"]


def test_the_services_measured_are_those_deploy_controllers_scales_out() -> None:
    names = [s.name for s in catalog_services()]
    assert names and set(names) <= set(FULL_PLANE_SERVICES)
    assert all(s.variant("debian", "modern").daemons for s in catalog_services())


def test_a_section_replaces_its_earlier_version_and_leaves_the_others(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    out.write_text("# Benchmark\n\n## A\n\nold a\n\n## B\n\nb\n")
    write_section(out, "## A", "## A\n\nnew a\n")
    assert out.read_text() == "# Benchmark\n\n## A\n\nnew a\n\n## B\n\nb\n"
    write_section(out, "## C", "## C\n\nc\n")
    assert out.read_text().endswith("## B\n\nb\n\n## C\n\nc\n")


def test_the_floors_restart_is_the_phases_own_command() -> None:
    """The bench restarts each daemon with what the runbook's operation would run: a stop,
    then a start, where the catalog says the init script's restart does not restart it."""
    node = load_inventory(HOSTS_EXAMPLE).controllers[0]
    profile = profile_for("debian", "sysv")
    catalog = {s.name: s.variant("debian", "modern") for s in catalog_services()}
    swift, nova = catalog["swift"], catalog["nova"]
    assert phase_restart_script(node, swift, "swift-proxy") == stop_then_start(
        profile, "swift-proxy", swift.sysv_pidfiles("swift-proxy")).script
    assert phase_restart_script(node, nova, "nova-conductor") == restart_and_wait(
        profile, "nova-conductor", nova.sysv_pidfiles("nova-conductor"), "restart", 30,
        True).script


class _Host:
    """A lab host whose apt-get fails `failures` times, counting its resets."""

    def __init__(self, name: str, failures: int) -> None:
        self.name, self.failures, self.resets = name, failures, 0

    def exec(self, script: str, check: bool = True,
             timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        failed = self.failures > 0
        self.failures -= 1
        return subprocess.CompletedProcess([self.name], 100 if failed else 0,
                                           "Errors were encountered\n" if failed else "", "")

    def reset(self) -> None:
        self.resets += 1


def test_a_failed_apt_floor_runs_once_more_on_reset_hosts_and_keeps_apts_output(
        tmp_path: Path) -> None:
    hosts = {"ctl2": _Host("ctl2", 1), "ctl3": _Host("ctl3", 0)}
    lab = types.SimpleNamespace(hosts=hosts)
    assert _install_floor(lab, ["nova-api"], tmp_path) >= 0  # type: ignore[arg-type]
    assert [h.resets for h in hosts.values()] == [2, 2]  # after each attempt
    assert (tmp_path / "apt-ctl2.log").read_text() == "Errors were encountered\n"
    hosts["ctl2"].failures = hosts["ctl3"].failures = 2
    with pytest.raises(AptFailed, match=r"whole output: .*apt-ctl"):
        _install_floor(lab, ["nova-api"], tmp_path)  # type: ignore[arg-type]
