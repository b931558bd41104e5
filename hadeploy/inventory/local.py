"""The workstation files an inventory names (`ssh.identity`, `ssh.known_hosts`, `ssh.config`,
the `[tls]` certificate and key).

Checked before anything connects, not when the inventory loads: rendering a file or an
offline plan needs none of them, and a new user's first `invoke render haproxy` should not
ask for an SSH key. A missing key file would otherwise surface as a failed connection.
"""

from __future__ import annotations

import os
from pathlib import Path

from hadeploy.errors import InventoryError
from hadeploy.inventory.model import Inventory
from hadeploy.inventory.tls import check_tls_files


def _unreadable(path: Path) -> str | None:
    """Why the file at `path` cannot be read, or None when it can."""
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def local_file_problems(inv: Inventory) -> list[str]:
    """Every problem with the local files `inv` names, each with its key and the fix."""
    ssh = inv.ssh
    problems: list[str] = []
    if ssh.identity:
        path = Path(os.path.expanduser(ssh.identity))
        why = _unreadable(path)
        if why:
            problems.append(f"ssh.identity: the private key {path} {why}; point ssh.identity "
                            "at the key whose public half is in the user's "
                            "~/.ssh/authorized_keys on the hosts")
    known = Path(os.path.expanduser(ssh.known_hosts))
    why = _unreadable(known)
    # accept-new creates a missing known_hosts on first use; strict would refuse every host
    if why and (why != "does not exist" or ssh.host_key_policy == "strict"):
        fix = ("fix its permissions or point ssh.known_hosts at a readable file"
               if why != "does not exist" else
               "add the hosts' keys to it after checking their fingerprints (ssh-keyscan HOST "
               f">> {known}), or set ssh.host_key_policy = \"accept-new\" to record keys on "
               "first use")
        problems.append(f"ssh.known_hosts: {known} {why}, so no host key can be trusted; {fix}")
    if ssh.config:
        path = Path(os.path.expanduser(ssh.config))
        why = _unreadable(path)
        if why:
            problems.append(f"ssh.config: the ssh_config file {path} {why}; fix the path or "
                            "remove ssh.config")
    problems += check_tls_files(inv)[1]
    return problems


def check_local_files(inv: Inventory) -> None:
    """Raise `InventoryError` when a local file `inv` names is missing or unreadable."""
    problems = local_file_problems(inv)
    if problems:
        raise InventoryError(inv.path, problems)
