"""`python -m hadeploy render`: print a rendered file so an operator can read it first."""

from __future__ import annotations

import argparse
import os
import sys

from hadeploy.errors import HadeployError
from hadeploy.inventory import load_inventory
from hadeploy.render import (
    render_haproxy_cfg,
    render_haproxy_check_script,
    render_keepalived_conf,
    render_sysctl_conf,
)

WHAT = ("haproxy", "keepalived", "check-script", "sysctl")


def default_hosts() -> str:
    """The inventory used when --hosts is not given: $HADEPLOY_HOSTS or ./hosts.toml."""
    return os.environ.get("HADEPLOY_HOSTS", "hosts.toml")


def render_text(hosts: str, what: str, node: str | None = None) -> str:
    """The text of file `what` for the inventory at `hosts` (secrets masked)."""
    inv = load_inventory(hosts)
    if what == "haproxy":
        return render_haproxy_cfg(inv)
    if what == "check-script":
        return render_haproxy_check_script()
    if what == "sysctl":
        return render_sysctl_conf()
    if what == "keepalived":
        names = [n.name for n in inv.balancers]
        if node is None:
            return "".join(
                f"# ===== {n.name} =====\n{render_keepalived_conf(inv, n)}\n" for n in inv.balancers
            )
        if node not in names:
            raise HadeployError(
                f"{hosts}: --node {node!r} is not a load-balancer node; use one of "
                f"{', '.join(names)}"
            )
        return render_keepalived_conf(inv, inv.node(node))
    raise HadeployError(f"cannot render {what!r}; choose one of {', '.join(WHAT)}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m hadeploy render`."""
    parser = argparse.ArgumentParser(prog="python -m hadeploy render",
                                     description="Print a file hadeploy would write.")
    parser.add_argument("what", choices=WHAT)
    parser.add_argument("--hosts", default=None, help="inventory (default: $HADEPLOY_HOSTS "
                        "or ./hosts.toml)")
    parser.add_argument("--node", default=None, help="for keepalived: one node only")
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(render_text(args.hosts or default_hosts(), args.what, args.node))
    except HadeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
