#!/usr/bin/env python3
"""Benchmark `deploy-lb` in the lab: hadeploy cold and no-op, the SSH floor, ansible-core.

    .venv/bin/python bench/run.py --hosts 3,12 --runs 5      # as root; writes bench/RESULTS.md

For each host count N it brings up a lab of N load balancers (lb1..lbN) and 3 backend hosts
(ctl1..ctl3), then runs rounds of, on the same hosts in the same session:

  hadeploy cold    all LB hosts reset to bare Debian, `python -m hadeploy deploy-lb --yes`
  hadeploy no-op   the same command again (nothing to change)
  ansible cold     hosts reset again, `ansible-playbook bench/ansible/site.yml`, same files
  ansible no-op    the playbook again
  floor            `ssh -F lab/ssh_config HOST true` to every LB host in parallel, fresh
                   connections (what no SSH tool can beat)

and reports medians. Wall times include each tool's start-up, as an operator sees them.
hadeploy's round trips per host come from its JSON `run-finished` event. ansible-core is
installed only into `bench/.venv` (created here), never into hadeploy's environment.

One lab per machine: the lab is built under the same blocking lock as the test suite's
(/var/tmp/hadeploy-lab.lock), so this waits for a running test session and vice versa.
Needs root. Touches only lab hosts (198.18.0.0/24).

    .venv/bin/python bench/run.py --offline-plan 200 --runs 5      # no lab, no root

measures only the offline plan of a generated inventory of 200 load balancers (and 3
controllers; addresses from 198.18.0.0/15, never connected to): the whole
`python -m hadeploy deploy-lb --hosts INV --dry-run --offline` process (wall time and peak
RSS), and inside a fresh process the time to load the inventory, build the runbook and plan,
and print the plan. Its section of bench/RESULTS.md is replaced (or added); nothing else in
the file changes. A full lab run measures it too, after the labs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path: the repository goes there instead, so
# that `bench`, `hadeploy` and `lab` import as packages and bench/'s modules shadow nothing.
ROOT = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0]).resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
