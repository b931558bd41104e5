"""Overlay layers of the lab's hosts: which directories are private, and how to prepare an
upper layer before it is mounted (mirrored directories, whiteouts, opaque directories).

Each host sees the real root file system, except that the directories in `LAB_DIRS` are
overlayfs mounts: lower = the real directory under the lab's shared *base layer*, upper =
the host's own disk under the state directory. Writing into an upper layer is only done
here, while it is not mounted (changing a mounted layer is undefined behaviour).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

#: Directories every host has its own copy-on-write view of (the rest is the real root fs,
#: except /run, /tmp, /dev, /proc and /sys which get fresh private mounts).
LAB_DIRS: tuple[str, ...] = ("etc", "var", "usr", "opt", "root", "home", "srv")

#: Of those, the ones whose workstation content hosts must not see at all (the machine's
#: /root has pyenv dotfiles and credentials; /home has its users): their only lower layer is
#: the base layer. (An opaque xattr would not do: overlayfs ignores it on a layer's root.)
UNSHARED_DIRS: frozenset[str] = frozenset({"root", "home"})

_OPAQUE_XATTR = "trusted.overlay.opaque"


def lower_layers(base: str) -> list[str]:
    """`DIR=LOWERDIRS` for each of LAB_DIRS, lowest last, with the base layer at `base`."""
    return [
        f"{name}={base}/{name}" if name in UNSHARED_DIRS else f"{name}={base}/{name}:/{name}"
        for name in LAB_DIRS
    ]


def lab_dir_of(path: Path) -> str | None:
    """Which of `LAB_DIRS` a workstation path lies in (after resolving symlinks), if any."""
    parts = path.resolve().parts
    return parts[1] if len(parts) > 1 and parts[1] in LAB_DIRS else None


def _copy_attrs(target: Path, source: Path) -> None:
    info = source.lstat()
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    target.chmod(stat.S_IMODE(info.st_mode))


def mirror_dirs(layer: Path, rel: PurePosixPath) -> Path:
    """Create `layer/rel` and its parents with the mode and owner of `/rel` on the workstation.

    The attributes of a directory in an overlay come from its topmost layer, so a directory
    created in an upper layer must look like the real one (e.g. /var/tmp is 1777).
    """
    layer.mkdir(parents=True, exist_ok=True)
    current = layer
    real = Path("/")
    for part in rel.parts:
        current = current / part
        real = real / part
        if not current.exists():
            current.mkdir()
            if real.is_dir():
                _copy_attrs(current, real)
    return current


def make_upper_roots(layer: Path, work: Path | None = None) -> None:
    """Create `layer/<d>` (attributes of `/<d>`) and `work/<d>` for every dir in LAB_DIRS."""
    for name in LAB_DIRS:
        mirror_dirs(layer, PurePosixPath(name))
        if work is not None:
            (work / name).mkdir(parents=True, exist_ok=True)


def make_whiteout(layer: Path, rel: PurePosixPath) -> None:
    """Hide `/rel` in the merged view: a 0/0 character device in the layer (overlayfs rule)."""
    parent = mirror_dirs(layer, rel.parent)
    target = parent / rel.name
    if target.is_symlink() or target.exists():
        return
    os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def make_opaque_dir(layer: Path, rel: PurePosixPath) -> Path:
    """Create `layer/rel` as an opaque directory: the lower directory's content is hidden."""
    target = mirror_dirs(layer, rel)
    os.setxattr(target, _OPAQUE_XATTR, b"y")
    return target


def is_whiteout(path: Path) -> bool:
    """True if `path` (inside a layer) is an overlayfs whiteout."""
    info = path.lstat()
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def hide_paths(layer: Path, paths: list[Path]) -> None:
    """Whiteout each workstation path that lies inside an overlaid directory.

    The lab's state and cache directories may be under /var (the default state dir is
    /var/tmp/hadeploy-lab): hosts must neither see other hosts' disks and the lab's private
    key, nor walk into a layer of their own overlay (overlayfs answers that with ELOOP).
    """
    for path in paths:
        if lab_dir_of(path) is not None:
            make_whiteout(layer, PurePosixPath(*path.resolve().parts[1:]))
