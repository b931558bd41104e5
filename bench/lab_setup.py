"""The files one host count of the lab benchmark runs with: hadeploy's inventory for the lab
hosts, and the very files hadeploy renders, laid out for the ansible playbook."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.paths import ROOT
from hadeploy.app import read_secrets
from hadeploy.inventory import load_inventory
from hadeploy.render import (
    render_haproxy_cfg,
    render_haproxy_check_script,
    render_keepalived_conf,
    render_sysctl_conf,
)
from lab import Lab
from lab.inventory import lab_inventory_text

BACKENDS = ("ctl1", "ctl2", "ctl3")
STATS_PASSWORD = "bench-only-password"


@dataclass(frozen=True)
class Setup:
    """Everything one host count needs: lab, inventory, ansible files, the hadeploy source."""

    lab: Lab
    lbs: tuple[str, ...]
    work: Path
    inventory: Path
    ansible_cfg: Path
    env: dict[str, str]
    cp_root: Path  # ansible's SSH control sockets, under a short path (socket path limit)
    src: Path = ROOT


def write_setup(lab: Lab, lbs: tuple[str, ...], work: Path, src: Path = ROOT) -> Setup:
    """The hadeploy inventory, and the same files rendered by hadeploy for ansible."""
    work.mkdir(parents=True, exist_ok=True)
    text = lab_inventory_text(lab, lbs=lbs, controllers=BACKENDS, name="bench")
    # Priorities are 103, 102, ...: the health-script weight must exceed their spread.
    text = text.replace("script_weight = 10", f"script_weight = {max(10, len(lbs))}")
    inventory = work / "hosts.toml"
    inventory.write_text(text)
    inventory.chmod(0o600)
    env = {**os.environ, "HADEPLOY_STATS_PASSWORD": STATS_PASSWORD, "NO_COLOR": "1",
           "ANSIBLE_NOCOLOR": "1"}
    os.environ["HADEPLOY_STATS_PASSWORD"] = STATS_PASSWORD
    inv = load_inventory(str(inventory))
    secrets = read_secrets(inv, required=True)
    files = work / "files"
    files.mkdir(exist_ok=True)
    (files / "haproxy.cfg").write_text(render_haproxy_cfg(inv, secrets))
    (files / "check_haproxy.sh").write_text(render_haproxy_check_script())
    (files / "60-hadeploy-haproxy.conf").write_text(render_sysctl_conf())
    for node in inv.balancers:
        (files / f"keepalived-{node.name}.conf").write_text(
            render_keepalived_conf(inv, node, secrets))
    (work / "inventory.ini").write_text(
        "[lb]\n" + "".join(f"{name}\n" for name in lbs) + "\n[lb:vars]\n"
        f"files_dir={files}\nansible_python_interpreter=/usr/bin/python3\n")
    cp_root = Path(tempfile.mkdtemp(prefix="hdb-", dir="/tmp"))
    cfg = work / "ansible.cfg"
    cfg.write_text(
        "[defaults]\n"
        f"inventory = {work / 'inventory.ini'}\n"
        "forks = 50\n"
        "host_key_checking = True\n"
        "retry_files_enabled = False\n"
        "interpreter_python = /usr/bin/python3\n"
        f"local_tmp = {work / 'ansible-tmp'}\n"
        "[ssh_connection]\n"
        "pipelining = True\n"
        f"ssh_args = -F {lab.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
        "control_path = %(directory)s/%%C\n")
    env["ANSIBLE_CONFIG"] = str(cfg)
    return Setup(lab, lbs, work, inventory, cfg, env, cp_root, src)


def reset_hosts(setup: Setup) -> None:
    """Every LB host back to bare Debian; hadeploy's journal of earlier runs removed."""
    for name in setup.lbs:
        setup.lab.hosts[name].reset()
    shutil.rmtree(setup.work / ".hadeploy", ignore_errors=True)
