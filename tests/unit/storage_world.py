"""What the storage probe (`hadeploy.facts.storage`) prints on a host, written out for fakes:
a config file, the real path of each directory it names, and a mount table."""

from __future__ import annotations

import base64
from collections.abc import Mapping

# A controller with everything on one local disk.
LOCAL_DISK = "/dev/vda1 / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n"


def storage_answer(config: str | None, mounts: str = LOCAL_DISK,
                   real_paths: Mapping[str, str] | None = None) -> str:
    """The probe's stdout for `config` (None: the file is absent) on a host with `mounts`."""
    lines = ["@@storage config"]
    if config is not None:
        lines += ["present", base64.b64encode(config.encode()).decode()]
    lines.append("@@storage paths")
    lines += [f"{path}\t{real}" for path, real in (real_paths or {}).items()]
    lines.append("@@storage mounts")
    return "\n".join(lines) + "\n" + mounts
