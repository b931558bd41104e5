"""Start-up stays lean: what a run loads before it starts connecting.

`hadeploy deploy-lb` dials its hosts as soon as every refusal has passed; the code it needs
only later (engine, runbooks, renderers, paramiko, the presentation) loads while the hosts'
handshakes go on, and code for other tasks (verify, status, rollback's undo, the lab, TLS
checks) not at all. Each check runs a fresh interpreter: nothing is timed, only which modules
are loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hadeploy.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]

# Never loaded by importing the entry point (`hadeploy` / `python -m hadeploy`).
LAZY_AT_IMPORT = ("invoke", "rich", "cryptography", "paramiko", "fabric", "lab", "hadeploy.engine",
                  "hadeploy.runbook", "hadeploy.ops", "hadeploy.render", "hadeploy.console",
                  "hadeploy.live", "hadeploy.verify", "hadeploy.verify_console",
                  "hadeploy.status", "hadeploy.transport.ssh")
# Still not loaded when deploy-lb starts dialling its hosts (the rest loads meanwhile).
LAZY_AT_DIAL = ("invoke", "rich", "cryptography", "paramiko", "fabric", "lab",
                "hadeploy.runbook", "hadeploy.ops", "hadeploy.render", "hadeploy.console",
                "hadeploy.live", "hadeploy.verify", "hadeploy.verify_console", "hadeploy.status")
# Of the engine, only what builds the first round trip's script (sent once connected).
ENGINE_AT_DIAL = {"hadeploy.engine", "hadeploy.engine.group", "hadeploy.engine.hoststate"}

# Runs `hadeploy deploy-lb --yes` in-process, but the dialler prints the loaded modules and
# ends the process instead of connecting anywhere.
AT_DIAL = """
import json, os, sys
import hadeploy.transport.dial as dial

def report(self, *args, **kwargs):
    print(json.dumps(sorted(sys.modules)), flush=True)
    os._exit(0)

dial.Dialer.__init__ = report
sys.argv = ["hadeploy", *sys.argv[1:]]
from hadeploy.cli import main
main()
"""


def loaded(modules: list[str], names: tuple[str, ...]) -> list[str]:
    """Which of `names` (or their submodules) are among `modules`."""
    return sorted(n for n in names if any(m == n or m.startswith(n + ".") for m in modules))


def python(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> list[str]:
    """sys.modules printed as JSON by a fresh interpreter running `args`."""
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def test_importing_the_entry_point_loads_no_presentation_engine_or_ssh() -> None:
    modules = python("-c", "import json, sys, hadeploy.cli, hadeploy.__main__; "
                     "print(json.dumps(sorted(sys.modules)))")
    assert "hadeploy.commands" in modules  # the check itself sees what it should
    assert loaded(modules, LAZY_AT_IMPORT) == []


def test_deploy_lb_dials_its_hosts_before_loading_the_rest(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    shutil.copy(ROOT / "hosts.example.toml", hosts)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    hosts.write_text(hosts.read_text().replace('known_hosts = "~/.ssh/known_hosts"',
                                               f'known_hosts = "{known_hosts}"'))
    secrets = dict.fromkeys(load_inventory(str(hosts)).secret_env_names(), "x")
    modules = python("-c", AT_DIAL, "deploy-lb", "--hosts", str(hosts), "--yes",
                     env=secrets, cwd=tmp_path)
    assert "hadeploy.transport.dial" in modules  # it did reach the dial
    assert loaded(modules, LAZY_AT_DIAL) == []
    assert {m for m in modules if m.startswith("hadeploy.engine")} == ENGINE_AT_DIAL


# Runs `hadeploy deploy-lb --dry-run --offline` in-process, then prints the loaded modules.
AFTER_PLAN = """
import json, sys
sys.argv = ["hadeploy", *sys.argv[1:]]
from hadeploy.cli import main
try:
    main()
finally:
    print(json.dumps(sorted(sys.modules)), file=sys.stderr, flush=True)
"""


def test_a_whole_plan_without_tls_never_loads_cryptography(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.toml"
    shutil.copy(ROOT / "hosts.example.toml", hosts)
    assert "[tls]" not in hosts.read_text()
    secrets = dict.fromkeys(load_inventory(str(hosts)).secret_env_names(), "x")
    done = subprocess.run([sys.executable, "-c", AFTER_PLAN, "deploy-lb", "--hosts", str(hosts),
                           "--dry-run", "--offline"], cwd=tmp_path, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120,
                          env={**os.environ, **secrets, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    modules: list[str] = json.loads(done.stderr.splitlines()[-1])
    assert "hadeploy.runbook.lb" in modules  # the plan was built
    assert loaded(modules, ("cryptography",)) == []
