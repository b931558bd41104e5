"""What no deploy tool can beat, measured on the same lab hosts: fresh SSH connections to
every host (`ssh HOST true`), and installing the two packages with apt alone."""

from __future__ import annotations

import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from bench.lab_setup import Setup, reset_hosts


def run_floor(setup: Setup) -> float:
    """`ssh HOST true` to every LB host at once, fresh connections: the wall time."""
    started = time.monotonic()
    procs = [subprocess.Popen(["ssh", "-F", str(setup.lab.ssh_config), "-o", "ControlMaster=no",
                               "-o", "ControlPath=none", name, "true"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for name in setup.lbs]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"ssh true failed: {err.decode(errors='replace')}")
    return time.monotonic() - started


def run_apt_alone(setup: Setup) -> float:
    """The part of a cold run no tool can skip: `apt-get install haproxy keepalived` on every
    LB host at once, entered directly (nsenter, no SSH, no deploy tool): the wall time."""
    reset_hosts(setup)
    install = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               "-o Dpkg::Options::=--force-confold haproxy keepalived >/dev/null 2>&1")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(setup.lbs)) as pool:
        for result in pool.map(lambda name: setup.lab.hosts[name].exec(install, check=False),
                               setup.lbs):
            if result.returncode != 0:
                raise SystemExit(f"apt-get install failed in the lab: {result.stderr}")
    return time.monotonic() - started
