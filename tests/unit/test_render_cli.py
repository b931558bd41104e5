"""`python -m hadeploy render ...`: prints what would be written, errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hadeploy.inventory import load_inventory
from hadeploy.render import (
    render_haproxy_cfg,
    render_haproxy_check_script,
    render_keepalived_conf,
    render_sysctl_conf,
)
from tests.unit.examples import COLOCATED, DATA, HOSTS_EXAMPLE, ROOT


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
        ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HADEPLOY_")}
    environ["PYTHONPATH"] = str(ROOT)
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "hadeploy", "render", *args], cwd=cwd,
                          env=environ, capture_output=True, text=True, timeout=60, check=False)


def test_prints_the_haproxy_cfg() -> None:
    result = run("--hosts", "hosts.example.toml", "haproxy")
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_haproxy_cfg(load_inventory(HOSTS_EXAMPLE))
    assert "frontend keystone-admin-vip\n    bind 10.15.85.31:35357\n" in result.stdout
    assert result.stderr == ""


def test_secrets_are_masked_even_when_set() -> None:
    result = run("--hosts", str(COLOCATED), "haproxy",
                 env={"HADEPLOY_STATS_PASSWORD": "TopSecret-42"})
    assert result.returncode == 0, result.stderr
    assert "TopSecret-42" not in result.stdout + result.stderr
    assert "stats auth root:********\n" in result.stdout


def test_keepalived_all_nodes_or_one() -> None:
    inv = load_inventory(HOSTS_EXAMPLE)
    every = run("--hosts", "hosts.example.toml", "keepalived")
    assert every.returncode == 0, every.stderr
    for node in inv.lbs:
        assert f"# ===== {node.name} =====\n{render_keepalived_conf(inv, node)}" in every.stdout
    one = run("--hosts", "hosts.example.toml", "keepalived", "--node", "mesa-lb-02")
    assert one.stdout == render_keepalived_conf(inv, inv.node("mesa-lb-02"))


def test_check_script_and_sysctl() -> None:
    assert run("--hosts", "hosts.example.toml", "check-script").stdout == \
        render_haproxy_check_script()
    assert run("--hosts", "hosts.example.toml", "sysctl").stdout == render_sysctl_conf()


def test_hosts_from_environment() -> None:
    result = run("haproxy", env={"HADEPLOY_HOSTS": str(COLOCATED)})
    assert result.returncode == 0, result.stderr
    assert "listen monitor" in result.stdout


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stdout == ""


def test_missing_inventory_exits_2_with_the_hint(tmp_path: Path) -> None:
    result = run("haproxy", cwd=tmp_path)  # no hosts.toml here
    assert result.returncode == 2
    no_traceback(result)
    assert result.stderr.startswith("error: hosts.toml: 1 problem found, nothing was run\n")
    assert "copy hosts.example.toml to hosts.toml" in result.stderr


def test_missing_explicit_file_names_it(tmp_path: Path) -> None:
    result = run("--hosts", str(tmp_path / "nope.toml"), "haproxy")
    assert result.returncode == 2
    no_traceback(result)
    assert f"{tmp_path / 'nope.toml'}: 1 problem found" in result.stderr


def test_bad_inventory_lists_its_problems() -> None:
    bad = DATA / "bad" / "several_problems.toml"
    result = run("--hosts", str(bad), "haproxy")
    assert result.returncode == 2
    no_traceback(result)
    assert "4 problems found, nothing was run" in result.stderr
    assert "  - ssh.port: 0 is outside 1..65535\n" in result.stderr


def test_unknown_node_exits_2() -> None:
    result = run("--hosts", "hosts.example.toml", "keepalived", "--node", "mesa-virt-01")
    assert result.returncode == 2
    no_traceback(result)
    assert "not a load-balancer node; use one of mesa-lb-01, mesa-lb-02, mesa-lb-03" in \
        result.stderr


@pytest.mark.parametrize("args", [("nothing",), ()])
def test_bad_arguments_are_usage_errors(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert "usage:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("binary", ["invoke", "hadeploy"])
def test_readme_render_commands_under_invoke_and_hadeploy(binary: str) -> None:
    """`invoke render haproxy` and `hadeploy render keepalived --node NODE`, as documented."""
    program = str(Path(sys.executable).parent / binary)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HADEPLOY_")}
    environ["HADEPLOY_HOSTS"] = str(HOSTS_EXAMPLE)
    inv = load_inventory(HOSTS_EXAMPLE)
    for args, expected in ((["haproxy"], render_haproxy_cfg(inv)),
                           (["keepalived", "--node", "mesa-lb-02"],
                            render_keepalived_conf(inv, inv.node("mesa-lb-02")))):
        result = subprocess.run([program, "render", *args], cwd=ROOT, env=environ,
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected
    wrong = subprocess.run([program, "render", "nothing"], cwd=ROOT, env=environ,
                           capture_output=True, text=True, timeout=60, check=False)
    assert wrong.returncode == 2
    assert "cannot render 'nothing'; choose one of haproxy, keepalived, check-script, sysctl" \
        in wrong.stderr


def test_help_after_the_task_shows_the_usage() -> None:
    """invoke would take `--help` for the file's name: it shows the usage instead."""
    result = run("--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Print a file hadeploy would write (secrets masked)")
    assert "usage: render haproxy|keepalived|check-script|sysctl [--hosts FILE]" in result.stdout
