"""The lab: simulated Debian hosts on one Linux machine, for end-to-end tests and the demo.

Each host is a set of namespaces (network, mount, UTS, IPC, PID) with its own overlay disk,
hostname, 198.18.0.x address on a shared bridge, real OpenSSH sshd and offline apt, reached
from the workstation (the root namespace, 198.18.0.1) over SSH like a real server:

    from lab import Lab
    lab = Lab.up(["lb1", "lb2"], Path("/var/tmp/hadeploy-lab"))
    lab.hosts["lb1"].exec("dpkg -l haproxy", check=False)
    lab.down()

Command line: `python -m lab up|down|status`. Needs root.
"""

from lab.aptrepo import DEFAULT_PACKAGES as DEFAULT_REPO_PACKAGES
from lab.aptrepo import AptRepo, ensure_repo
from lab.cluster import DEFAULT_PACKAGES_BARE, DEFAULT_STATE_DIR, Lab
from lab.hosts import LabCommandFailed, LabHost
from lab.lock import LAB_LOCK, lab_lock
from lab.network import WORKSTATION_ADDRESS

__all__ = [
    "DEFAULT_PACKAGES_BARE",
    "DEFAULT_REPO_PACKAGES",
    "DEFAULT_STATE_DIR",
    "LAB_LOCK",
    "WORKSTATION_ADDRESS",
    "AptRepo",
    "Lab",
    "LabCommandFailed",
    "LabHost",
    "ensure_repo",
    "lab_lock",
]
