"""Where the benchmark finds the repository, the ansible playbook and its own virtualenv."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
# ansible-core lives here only, never in hadeploy's environment.
VENV = BENCH / ".venv"
PLAYBOOK = BENCH / "ansible" / "site.yml"
