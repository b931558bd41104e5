"""ansible-core for comparison: installed into the benchmark's own virtualenv, and one run of
the playbook that does what `deploy-lb` does, with fresh SSH control masters."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.lab_setup import Setup
from bench.paths import PLAYBOOK, VENV
from bench.process import log, must, timed


@dataclass(frozen=True)
class AnsibleRun:
    """The figures of one playbook run."""

    seconds: float
    changed: int  # the sum of the recap's changed= counts


def ensure_ansible() -> Path:
    """ansible-playbook from the benchmark's own virtualenv (created on first use)."""
    playbook = VENV / "bin" / "ansible-playbook"
    if playbook.exists():
        return playbook
    log(f"creating {VENV} with ansible-core (pip)")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "ansible-core"], check=True, stdin=subprocess.DEVNULL)
    return playbook


def run_ansible(setup: Setup, playbook: Path, what: str) -> AnsibleRun:
    """One ansible-playbook run with fresh SSH control masters, closed afterwards."""
    cp_dir = Path(tempfile.mkdtemp(dir=setup.cp_root))
    env = {**setup.env, "ANSIBLE_SSH_CONTROL_PATH_DIR": str(cp_dir)}
    try:
        result = must(timed([str(playbook), str(PLAYBOOK)], env, setup.work),
                      f"ansible {what}")
    finally:
        for name in setup.lbs:  # masters persist 60 s: close them so the next run is fresh
            subprocess.run(["ssh", "-F", str(setup.lab.ssh_config), "-o",
                            f"ControlPath={cp_dir}/%C", "-O", "exit", name],
                           capture_output=True, check=False, timeout=10)
        shutil.rmtree(cp_dir, ignore_errors=True)
    changed = sum(int(n) for n in re.findall(r"\bchanged=(\d+)", result.stdout))
    return AnsibleRun(result.seconds, changed)
