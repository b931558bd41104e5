#!/usr/bin/env python3
"""Bench mode of issue 13: requests failed through the VIP while a live control plane
changes, written to bench/LIVE-CHANGES.md.

    .venv/bin/python bench/live.py          # as root; HADEPLOY_LAB_SLOT=N for another slot

It runs the lab test that asserts those figures (tests/lab/test_live_changes.py: real
Keystone and Glance on three controllers behind three balancers, three clients opening a new
connection per request and one kept-alive client, while hadeploy (1) changes haproxy.cfg,
(2) keepalived.conf, (3) a key that restarts Glance on the original, (5) removes a
controller, (4) adds one back as a bare host, (6) rolls the controllers phase back), so the
benchmark and the test can never measure two different things. The test hands its figures
over through HADEPLOY_LIVE_FIGURES; this renders them with the machine they came from.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.live_changes import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
