"""Where a service keeps its files: the settings of a config file that choose its storage,
the real paths of the directories they name, and the filesystem each one lives on, in one
read-only probe.

With several controllers behind the VIP, a directory on the node's own disk holds state the
other nodes never see; one on a network or cluster filesystem is shared. The probe prints
the mount table rather than asking per path, so the pure parser decides. Of the config it
sends only section headers and the asked keys: the file's passwords stay on the host.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass

from hadeploy import framing
from hadeploy.facts import Fact, Probe
from hadeploy.quoting import q

# Filesystems that every node mounting them sees the same: network and cluster filesystems
# (mount table names: kernel CephFS is `ceph`, FUSE mounts are `fuse.<driver>`).
SHARED_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "ceph", "cephfs", "fuse.ceph-fuse", "fuse.cephfs", "glusterfs",
    "fuse.glusterfs", "ocfs2", "gfs2", "lustre", "gpfs", "beegfs", "cifs", "smb3",
})
SECTION = "storage"
PRESENT = "present"
# A trailing `:N`, the priority a `filesystem_store_datadirs` entry carries, is not part of
# the directory: the probe and `directory_of` both drop it.
PRIORITY = re.compile(r":[0-9]*$")
OCTAL = re.compile(r"\\([0-7]{3})")


def is_shared_filesystem(fstype: str) -> bool:
    """Whether a filesystem of type `fstype` (as the mount table names it) is shared by the
    nodes that mount it."""
    return fstype in SHARED_FILESYSTEMS


def directory_of(value: str) -> str:
    """The directory a path setting names (without a `:priority` suffix)."""
    return PRIORITY.sub("", value.strip())


@dataclass(frozen=True)
class Mount:
    """One line of the mount table: where a filesystem is mounted, and its type."""

    target: str
    fstype: str


@dataclass(frozen=True)
class StorageSeen:
    """A config file's section headers and asked keys, in order (None: the file is absent),
    the real path of each directory it could name, and the mount table."""

    text: str | None
    real_paths: Mapping[str, str]
    mounts: tuple[Mount, ...]

    def real_path(self, path: str) -> str:
        """`path` with its symlinks followed (itself when the probe did not resolve it)."""
        return self.real_paths.get(path, path)

    def filesystem(self, path: str) -> str:
        """The type of the filesystem that holds `path` ('' when the mount table is unknown):
        the mount with the longest target containing it, the last one mounted there."""
        holding = [m for m in self.mounts
                   if path == m.target or path.startswith(m.target.rstrip("/") + "/")]
        # max() keeps the first of equals: reversed, that is the last mounted on the target
        best = max(reversed(holding), key=lambda m: len(m.target), default=None)
        return best.fstype if best else ""


def _unescape(field: str) -> str:
    """A mount table field with its octal escapes (`\\040` for a space) decoded."""
    return OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mounts(text: str) -> tuple[Mount, ...]:
    """The mounts of a /proc/self/mounts text (device, target, type, options...)."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append(Mount(_unescape(fields[1]), fields[2]))
    return tuple(mounts)


def storage_probe(file: str, keys: tuple[str, ...], path_keys: tuple[str, ...],
                  default_path: str) -> str:
    """Print the section headers and `keys` lines of `file` (base64), then each directory
    `path_keys` or the default could name with its real path (`value<TAB>real path`), then
    the mount table, as framed sections."""
    f = q(file)
    lines = q(f"^[[:blank:]]*(\\[|({'|'.join(map(re.escape, keys))})[[:blank:]]*[=:])")
    values = " ".join(
        f"-e 's/^[[:blank:]]*{key}[[:blank:]]*[=:][[:blank:]]*//p'" for key in path_keys)
    config = (f"if [ -f {f} ]; then echo {PRESENT}; grep -E {lines} {f} | base64 -w0; echo; "
              "fi")
    paths = (f"{{ printf '%s\\n' {q(default_path)}; sed -n {values} {f} 2>/dev/null; }} | "
             "sed -e 's/[[:space:]]*$//' -e 's/:[0-9]*$//' | while IFS= read -r p; do "
             "printf '%s\\t%s\\n' \"$p\" \"$(readlink -m -- \"$p\")\"; done")
    return framing.sections_script(SECTION, [("config", config), ("paths", paths),
                                             ("mounts", "cat /proc/self/mounts")])


def parse_storage(probe: Probe) -> StorageSeen:
    """Parse `storage_probe` output."""
    parts = framing.split_sections(SECTION, probe.stdout)
    said, _, encoded = parts.get("config", "").partition("\n")
    text = base64.b64decode(encoded.strip()).decode("utf-8") if said == PRESENT else None
    real_paths = {}
    for line in parts.get("paths", "").splitlines():
        path, tab, real = line.partition("\t")
        if tab and real:
            real_paths[path] = real
    return StorageSeen(text, real_paths, parse_mounts(parts.get("mounts", "")))


def storage(file: str, keys: tuple[str, ...], path_keys: tuple[str, ...],
            default_path: str) -> Fact[StorageSeen]:
    """The fact `StorageSeen` of `file`: its `keys` (in every section), and the directories
    named by `path_keys` or `default_path`."""
    return Fact(storage_probe(file, keys, path_keys, default_path), parse_storage)
