"""A directory every controller shares, as an NFS mount would give them: the lab's stand-in
for the shared image store real deployments put under Glance's file store.

The directory lives in the machine's /mnt, which the hosts do not overlay (lab.overlay): a
bind mount of it inside each host is the same directory everywhere.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lab.cluster import Lab
from lab.openstack.hostops import run

#: Debian's fixed uid/gid of the glance user (base-passwd), the owner of the image store.
GLANCE_ID = 64062
IMAGES = "/var/lib/glance/images"

_MOUNT = """\
set -eu
mkdir -p "$2"
if ! mountpoint -q "$2"; then
    cp -a "$2"/. "$1"/ 2>/dev/null || true
    mount --bind "$1" "$2"
fi
"""


def share_directory(lab: Lab, hosts: Sequence[str], path: str = IMAGES,
                    owner: int = GLANCE_ID) -> Path:
    """Bind-mount one new directory of the machine at `path` on every host of `hosts` (what
    is there already on a host is copied in first); returns the directory, which
    `unshare_directory` removes."""
    shared = Path(tempfile.mkdtemp(prefix="hadeploy-lab-shared-", dir="/mnt"))
    shared.chmod(0o750)
    try:
        os.chown(shared, owner, owner)
        for name in hosts:
            run(lab.hosts[name], _MOUNT, [str(shared), path], f"share {path}")
    except BaseException:
        unshare_directory(lab, hosts, shared, path)
        raise
    return shared


def unshare_directory(lab: Lab, hosts: Sequence[str], shared: Path, path: str = IMAGES) -> None:
    """Undo `share_directory`: unmount it on the hosts (those still up) and remove it."""
    for name in hosts:
        lab.hosts[name].exec(["sh", "-c", '! mountpoint -q "$1" || umount "$1"', "sh", path],
                             check=False)
    shutil.rmtree(shared, ignore_errors=True)
