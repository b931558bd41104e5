"""Bind a supporting service (MariaDB, RabbitMQ) of a lab host to the host's own address with
the catalog's own edit: what the operator of guide 2 has done before haproxy comes, and what
hadeploy's preflight tells them to do otherwise (it restarts no database or broker)."""

from __future__ import annotations

from hadeploy.catalog import load_catalog
from hadeploy.render.binds import render_bind
from lab.hosts import LabHost
from lab.openstack.hostops import run


def bind_to_node(host: LabHost, service: str) -> None:
    """Set every bind file of catalog service `service` (Debian variant) to the host's address."""
    variant = load_catalog()[service].variant("debian", "modern")
    for bind in variant.binds_for("modern"):
        text = host.exec(f"cat {bind.file} 2>/dev/null || true").stdout
        run(host, 'cat >"$1"', [bind.file], f"bind {service} in {bind.file}",
            input=render_bind(bind, text, host.address))
