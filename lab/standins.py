"""Stand-in APIs and VIP lookups on lab hosts, shared by the demo and the lab tests.

The stand-ins are small HTTP servers on each host's own address answering with the host's
name, so a request through the VIP shows which backend served it; they answer haproxy's HTTP
health checks too.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Sequence

from lab.cluster import Lab
from lab.errors import LabError

STAND_IN_PORTS = (5000, 9292)  # Keystone and Glance on the modern release


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return str(response.read().decode().strip())
    except OSError:
        return None


def start_backends(lab: Lab, hosts: Sequence[str], ports: Sequence[int] = STAND_IN_PORTS,
                   seconds: float = 30.0) -> None:
    """Start a stand-in on every port of every host and wait until each one answers."""
    for name in hosts:
        host = lab.hosts[name]
        # /v3 and /healthcheck: what haproxy's HTTP checks ask Keystone and Glance on modern
        host.exec(["sh", "-c", "mkdir -p /srv/www && hostname | tee /srv/www/index.html "
                   "/srv/www/v3 /srv/www/healthcheck >/dev/null"])
        for port in ports:
            host.exec(["sh", "-c",
                       f"cd /srv/www && nohup /usr/bin/python3 -m http.server {port} "
                       f"--bind {host.address} >/dev/null 2>&1 &"])
    deadline = time.monotonic() + seconds
    for name in hosts:
        for port in ports:
            url = f"http://{lab.hosts[name].address}:{port}/"
            while http_get(url) is None:
                if time.monotonic() > deadline:
                    raise LabError(f"{name}: stand-in on port {port} did not answer in "
                                   f"{seconds}s")
                time.sleep(0.2)


def vip_holders(lab: Lab, hosts: Sequence[str], vip: str) -> list[str]:
    """The hosts whose eth0 carries `vip`."""
    return [h for h in hosts
            if f" {vip}/" in lab.hosts[h].exec(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout]
