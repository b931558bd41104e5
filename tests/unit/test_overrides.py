"""Operator overrides per proxy ([haproxy.overrides.PROXY]): extra frontend, backend and
server option lines, rendered where they belong, judged by the real `haproxy -c`."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from hadeploy.errors import InventoryError
from hadeploy.inventory import Inventory
from hadeploy.render import render_haproxy_cfg
from tests.unit.examples import HOSTS_EXAMPLE

HAPROXY = shutil.which("haproxy")
END = '[services]\n'
OVERRIDE = ('[haproxy.overrides.glance]\nfrontend = ["timeout client 900s"]\n'
            'backend = ["option forwardfor", "timeout server 900s"]\n'
            'server = ["maxconn 50", "weight 10"]\n\n')


def section(text: str, header: str) -> list[str]:
    block = text.split("\n" + header + "\n")[1].split("\n\n")[0]
    return [line.strip() for line in block.split("\n")]


def test_lines_land_in_their_proxy_only(variant: Callable[..., Inventory]) -> None:
    text = render_haproxy_cfg(variant(HOSTS_EXAMPLE, (END, OVERRIDE + END)))
    front = section(text, "frontend glance-vip")
    assert front[-2:] == ["timeout client 900s", "default_backend glance-api"]
    back = section(text, "backend glance-api")
    assert back[1:3] == ["option forwardfor", "timeout server 900s"]
    servers = [line for line in back if line.startswith("server ")]
    assert servers and all(line.endswith(" maxconn 50 weight 10") for line in servers)
    assert "900s" not in "\n".join(section(text, "backend cinder-api"))


def test_unknown_proxy_and_bad_lines_are_refused(variant: Callable[..., Inventory]) -> None:
    with pytest.raises(InventoryError) as caught:
        variant(HOSTS_EXAMPLE, (END, '[haproxy.overrides.glances]\nbackend = ["x"]\n'
                                     '[haproxy.overrides.cinder]\nserver = ["a\\nb"]\n'
                                     'listen = ["x"]\n\n' + END))
    assert caught.value.problems == [
        "haproxy.overrides.cinder.listen: unknown key; known keys here are backend, "
        "frontend, server",
        "haproxy.overrides.cinder.server: 'a\\nb' is not one line of printable ASCII "
        "(haproxy -c checks what it means)",
    ]
    with pytest.raises(InventoryError) as caught:
        variant(HOSTS_EXAMPLE, (END, '[haproxy.overrides.glances]\nbackend = ["x"]\n\n' + END))
    assert caught.value.problems == [
        "haproxy.overrides.glances: not a proxy haproxy serves here; the balanced proxies are "
        "cinder, glance, glance-registry, keystone-admin, keystone-public, nova-compute, "
        "nova-ec2, nova-metadata, quantum"]


@pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed")
def test_real_haproxy_judges_the_lines(variant: Callable[..., Inventory],
                                       tmp_path: Path) -> None:
    assert HAPROXY is not None
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(variant(HOSTS_EXAMPLE, (END, OVERRIDE + END))))
    ok = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                        check=False, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = OVERRIDE.replace("option forwardfor", "option forwardfour")
    cfg.write_text(render_haproxy_cfg(variant(HOSTS_EXAMPLE, (END, bad + END))))
    refused = subprocess.run([HAPROXY, "-c", "-f", str(cfg)], capture_output=True, text=True,
                             check=False, timeout=60)
    assert refused.returncode != 0 and "forwardfour" in refused.stdout + refused.stderr
