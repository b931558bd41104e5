"""haproxy's Prometheus exporter on the monitor listener: off unless asked, on its own path,
accepted by the real haproxy."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hadeploy.errors import InventoryError
from hadeploy.inventory import Inventory
from hadeploy.render import render_haproxy_cfg
from tests.unit.examples import COLOCATED

HAPROXY = shutil.which("haproxy")
MONITOR = 'stats_refresh = "5s"\n'
EXPORTER = "http-request use-service prometheus-exporter if { path /metrics }"


def monitor_block(text: str) -> list[str]:
    return text.split("listen monitor\n")[1].split("\n\n")[0].split("\n")


def test_off_unless_asked(colocated: Inventory) -> None:
    assert "prometheus" not in render_haproxy_cfg(colocated)


def test_metrics_served_before_the_stats_page(variant: Callable[..., Inventory]) -> None:
    inv = variant(COLOCATED, (MONITOR, MONITOR + "metrics = true\n"))
    block = [line.strip() for line in monitor_block(render_haproxy_cfg(inv))]
    assert block.index(EXPORTER) == block.index("monitor-uri /status") + 1
    assert block.index(EXPORTER) < block.index("stats enable")
    other = variant(COLOCATED, (MONITOR, MONITOR + 'metrics = true\nmetrics_uri = "/prom"\n'))
    assert "if { path /prom }" in render_haproxy_cfg(other)


def test_metrics_uri_must_be_its_own(variant: Callable[..., Inventory]) -> None:
    with pytest.raises(InventoryError) as caught:
        variant(COLOCATED, (MONITOR, MONITOR + 'metrics = true\nmetrics_uri = "/admin"\n'))
    assert caught.value.problems == [
        "haproxy.monitor.metrics_uri: /admin is also the monitor's uri or stats_uri; give the "
        "metrics their own path, e.g. /metrics"]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_real_haproxy_knows_the_exporter(variant: Callable[..., Inventory],
                                         tmp_path: Path) -> None:
    inv = variant(COLOCATED, (MONITOR, MONITOR + "metrics = true\n"))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(inv))
    assert HAPROXY is not None
    run = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                         check=False, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    cfg.write_text(cfg.read_text().replace("prometheus-exporter", "prometheus-exporterx"))
    assert subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True,
                          check=False, timeout=60).returncode != 0
