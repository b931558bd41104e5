"""What no deploy tool can beat, measured on the same lab hosts: fresh SSH connections to
every host (`ssh HOST true`), and installing the two packages with apt alone."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.lab_setup import Setup, reset_hosts
from lab import Lab

# Blocks service starts from maintainer scripts during an install, as hadeploy's does.
BLOCK_STARTS = ("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && "
                "chmod 755 /usr/sbin/policy-rc.d && ")


def ssh_floor(lab: Lab, hosts: Sequence[str]) -> float:
    """`ssh HOST true` to every host of `hosts` at once, fresh connections: the wall time."""
    started = time.monotonic()
    procs = [subprocess.Popen(["ssh", "-F", str(lab.ssh_config), "-o", "ControlMaster=no",
                               "-o", "ControlPath=none", name, "true"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
             for name in hosts]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"ssh true failed: {err.decode(errors='replace')}")
    return time.monotonic() - started


class AptFailed(SystemExit):
    """apt-get failed in a lab host: no measurement. Its whole output is kept in `log`."""


def apt_alone(lab: Lab, hosts: Sequence[str], packages: Sequence[str],
              block_starts: bool = False, logs: Path | None = None) -> float:
    """`apt-get install PACKAGES` on every host of `hosts` at once, entered directly
    (nsenter, no SSH, no deploy tool): the wall time. `block_starts`: with a policy-rc.d
    that keeps maintainer scripts from starting services (removed after). A failure raises
    `AptFailed` with apt's last lines, its whole output written to `logs`/apt-HOST.log."""
    install = ("DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               "-o Dpkg::Options::=--force-confold " + " ".join(packages) + " 2>&1")
    if block_starts:
        install = (BLOCK_STARTS + install
                   + "; status=$?; rm -f /usr/sbin/policy-rc.d; exit $status")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        for name, result in zip(hosts, pool.map(
                lambda name: lab.hosts[name].exec(install, check=False, timeout=1800), hosts),
                strict=True):
            if result.returncode != 0:  # what apt and dpkg said last, to see why
                said = "\n".join(result.stdout.splitlines()[-40:])
                kept = ""
                if logs is not None:
                    logs.mkdir(parents=True, exist_ok=True)
                    whole = logs / f"apt-{name}.log"
                    whole.write_text(result.stdout + result.stderr)
                    kept = f"\n(whole output: {whole})"
                raise AptFailed(f"apt-get install failed in the lab:\n{said}\n{result.stderr}"
                                + kept)
    return time.monotonic() - started


def run_floor(setup: Setup) -> float:
    """`ssh HOST true` to every LB host at once, fresh connections: the wall time."""
    return ssh_floor(setup.lab, setup.lbs)


def run_apt_alone(setup: Setup) -> float:
    """The part of a cold run no tool can skip: `apt-get install haproxy keepalived` on every
    LB host at once, entered directly: the wall time."""
    reset_hosts(setup)
    return apt_alone(setup.lab, setup.lbs, ("haproxy", "keepalived"))
