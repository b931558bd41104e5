"""`python -m lab up|down|status`: the lab by hand (demo, debugging). Needs root.

    python -m lab up --hosts 3                  # lb1 lb2 lb3
    python -m lab up --names lb1,lb2,ctl1
    python -m lab up --names lb1,ctl1,ctl2 --openstack   # + OpenStack packages
    python -m lab original ctl1                 # ctl1: packstack-style controller
    ssh -F /var/tmp/hadeploy-lab/ssh_config lb1
    python -m lab status
    python -m lab down
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from hadeploy.errors import HadeployError
from lab.aptrepo import DEFAULT_PACKAGES as DEFAULT_REPO_PACKAGES
from lab.cluster import DEFAULT_STATE_DIR, Lab
from lab.errors import LabError
from lab.network import WORKSTATION_ADDRESS
from lab.openstack import (
    FULL_PLANE,
    FULL_PLANE_REPO_PACKAGES,
    KEYSTONE_GLANCE,
    LAB_REPO_PACKAGES,
    provision_original,
)


def _names(args: argparse.Namespace) -> list[str]:
    """--names wins; otherwise --hosts N gives lb1..lbN."""
    if args.names:
        return [n.strip() for n in args.names.split(",") if n.strip()]
    return [f"lb{i}" for i in range(1, args.hosts + 1)]


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    packages = (FULL_PLANE_REPO_PACKAGES if args.full else
                LAB_REPO_PACKAGES if args.openstack else DEFAULT_REPO_PACKAGES)
    lab = Lab.up(_names(args), args.state_dir, repo_packages=packages)
    print(f"lab up in {time.monotonic() - started:.1f} s; workstation is {WORKSTATION_ADDRESS}")
    for host in lab.hosts.values():
        print(f"  {host.name:<12} {host.address}")
    print(f"ssh in with:  ssh -F {lab.ssh_config} {next(iter(lab.hosts))}")
    print(f"take down:    python -m lab down --state-dir {lab.state_dir}")
    return 0


def _original(args: argparse.Namespace) -> int:
    if not (args.state_dir / "lab.json").exists():
        raise LabError(f"no lab in {args.state_dir}: bring one up with --openstack first")
    lab = Lab.load(args.state_dir)
    if args.host not in lab.hosts:
        raise LabError(f"no host {args.host!r} in the lab (it has {', '.join(lab.hosts)})")
    plane = FULL_PLANE if args.full else KEYSTONE_GLANCE
    original = provision_original(lab, args.host, lab.state_dir, plane=plane, progress=print)
    print(f"{args.host} is the original controller "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in original.timings.items())})")
    print(f"  keystone {original.keystone_url}   glance {original.glance_url}")
    print(f"  admin credentials: {original.admin_rc} on {args.host}, "
          f"{lab.state_dir}/keystonerc_admin.{args.host} here")
    return 0


def _down(args: argparse.Namespace) -> int:
    if not (args.state_dir / "lab.json").exists():
        print(f"no lab in {args.state_dir}")
        return 0
    Lab.load(args.state_dir).down()
    print(f"lab in {args.state_dir} is down")
    return 0


def _status(args: argparse.Namespace) -> int:
    if not (args.state_dir / "lab.json").exists():
        print(f"no lab in {args.state_dir}")
        return 1
    lab = Lab.load(args.state_dir)
    print(f"lab in {lab.state_dir}: {'up' if lab.is_up() else 'NOT fully up'}")
    for host in lab.hosts.values():
        try:
            detail = f"pid {host.pid}, sshd {'running' if host.sshd_running() else 'stopped'}"
        except LabError:
            detail = "down"
        print(f"  {host.name:<12} {host.address:<14} {detail}")
    print(f"ssh in with:  ssh -F {lab.ssh_config} <host>")
    return 0 if lab.is_up() else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run one lab command; errors are shown without traceback."""
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("up", "bring a lab up"), ("down", "tear the lab down"),
                           ("status", "show the lab's hosts"),
                           ("original", "make a host a packstack-style OpenStack controller")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                         help=f"where the lab keeps its state (default {DEFAULT_STATE_DIR})")
        if name == "up":
            cmd.add_argument("--hosts", type=int, default=3,
                             help="number of hosts, named lb1..lbN (default 3)")
            cmd.add_argument("--names", help="comma-separated host names, e.g. lb1,lb2,ctl1 "
                             "(overrides --hosts)")
            cmd.add_argument("--openstack", action="store_true",
                             help="also put Debian's OpenStack packages in the hosts' offline "
                             "repository (needed by `original` and deploy-controllers)")
            cmd.add_argument("--full", action="store_true",
                             help="the packages of the whole control plane (`original --full`)")
        if name == "original":
            cmd.add_argument("host", help="the lab host to provision (it is reset first)")
            cmd.add_argument("--full", action="store_true",
                             help="the whole control plane, not only Keystone and Glance "
                             "(needs a lab brought up with --full)")
    args = parser.parse_args(argv)
    handler = {"up": _up, "down": _down, "status": _status,
               "original": _original}[args.command]
    try:
        return handler(args)
    except HadeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
