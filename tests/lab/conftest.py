"""The `lab` fixture: six simulated hosts (lb1-lb3, ctl1-ctl3 at 198.18.0.11-.16), brought up
once per test session and always torn down at the end, also on failure, Ctrl-C or SIGTERM.

Tests using it need root; without root they are skipped.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import signal
from collections.abc import Iterator

import pytest

from hadeploy.lab import Lab

LAB_HOSTS = ("lb1", "lb2", "lb3", "ctl1", "ctl2", "ctl3")
# One lab fits on a machine (one bridge, one 198.18.0.1): test sessions wait for each other.
LAB_LOCK = "/var/tmp/hadeploy-lab.lock"


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A running lab of six bare Debian hosts; see hadeploy.lab."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (namespaces, mounts, veths)")
    state_dir = tmp_path_factory.mktemp("lab")
    lock_fd = os.open(LAB_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    # SIGTERM (a CI timeout) would otherwise kill pytest without running finalizers.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    the_lab = Lab.up(LAB_HOSTS, state_dir)
    atexit.register(the_lab.down)
    try:
        yield the_lab
    finally:
        the_lab.down()
        atexit.unregister(the_lab.down)
        signal.signal(signal.SIGTERM, previous)
        os.close(lock_fd)

