"""One lab per slot: it owns the bridge, 198.18.N.1 and the 198.18.N.x addresses.

Whatever brings a lab up (the test session, the demo, the benchmark) holds this lock for as
long as its lab lives, so a second one waits instead of tearing the first one's network
apart.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lab.network import SLOT

LAB_LOCK = "/var/tmp/hadeploy-lab.lock" if SLOT == 0 else f"/var/tmp/hadeploy-lab{SLOT}.lock"


@contextmanager
def lab_lock(path: str = LAB_LOCK, waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the machine's lab lock; `waiting` is called once if another holder makes us wait."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting is not None:
                waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
