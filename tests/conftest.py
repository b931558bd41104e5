"""Test-session wiring shared by unit and lab tests.

`./dev test` runs pytest in two xdist workers, one file at a time each; every worker brings up
its own lab (tests/lab/conftest.py), so each needs its own lab slot (HADEPLOY_LAB_SLOT: its
own 198.18.N.0/24, interface and lock). Worker gwK takes slot BASE+K, BASE being the slot the
session was started with (0 by default). This runs before any test module imports `lab`,
which reads the slot once at import.
"""

from __future__ import annotations

import os

from tests.slots import worker_slot

_slot = worker_slot(os.environ)
if _slot is not None:
    os.environ["HADEPLOY_LAB_SLOT"] = str(_slot)
