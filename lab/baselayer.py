"""The base layer: what turns the workstation's root file system into a *bare* Debian server.

Hosts see the real /etc, /usr, /var... as their lowest layer, so a package installed on the
workstation (CI installs haproxy and keepalived for the unit tests) would look installed on
every host. The base layer sits between the real directories and each host's own upper
layer and holds, built once with real dpkg in a throwaway namespace:

- `packages_bare` purged (dpkg --purge), so `dpkg -l haproxy` on a host says not installed;
- no man pages of workstation-only software (the Cloud SDK's), man-db's index rebuilt;
- no blocking /usr/sbin/policy-rc.d (service starts work as on a real server);
- no workstation SSH host keys (each host gets its own), a key-only sshd drop-in;
- a `hadeploy` user with passwordless sudo and its home, Debian's stock dotfiles for root
  (hosts do not see the workstation's /root and /home at all: see overlay.UNSHARED_DIRS);
- the lab's offline repository as the only apt source, `apt-get update` already done;
- no DNS (resolv.conf without servers: hosts resolve lab names through /etc/hosts).

It is cached under `<cache>/base/<key>`, the key covering the workstation's dpkg status, the
purged packages, the repository index and this recipe; a recorded size and mtime of every
workstation file the layer shadows must also still match, else it is rebuilt.

At `Lab.up`, the layer is copied into a tmpfs in the core's mount namespace (`stage`), from
which every host's mount namespace is cloned. overlayfs refuses a lower layer that lies
inside another lower layer of the same mount (/var/cache/... inside /var), a tmpfs does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from lab import overlay
from lab.aptrepo import AptRepo, cache_lock, check_package_names
from lab.errors import LabError
from lab.overlay import UNSHARED_DIRS, is_whiteout, make_opaque_dir, make_upper_roots
from lab.procs import CLEAN_ENV, ProcRef, run

#: Where hosts see the offline repository (bind-mounted read-only) and the source line for it.
REPO_MOUNTPOINT = "/var/lib/hadeploy-lab/apt-repo"
#: Where the base layer is staged inside the core's mount namespace (a private tmpfs there).
STAGE_MOUNT = "/mnt"
STAGE_BASE = f"{STAGE_MOUNT}/hadeploy-lab-base"
USER = "hadeploy"

_KEEP_BUILDS = 2
# Files the recipe writes from scratch: what the workstation has there does not matter
# (its resolv.conf is rewritten at every boot of the machine).
_REPLACED = frozenset({"/etc/resolv.conf"})

_SSHD_DROPIN = """\
# hadeploy lab: key-only logins, as on a cloud image; one host key set per host
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
"""

# Runs as root in a throwaway mount/pid/net namespace (offline). $1 build dir (holding layer/
# and work/, which overlayfs wants on one mount), $2 repository dir, $3 repository mount
# point, $4 sshd drop-in text, $5... packages to purge.
_BUILD_SCRIPT = r"""
set -eu
build=$1 repo=$2 repo_mnt=$3 dropin=$4
shift 4
b=/run/hadeploy-build
mount -t tmpfs -o mode=0755 hadeploy-build /run
mkdir -p /run/lock "$b/build" "$b/repo"
mount --bind "$build" "$b/build"
mount --bind "$repo" "$b/repo"
for d in etc var usr opt root home srv; do
    mount -t overlay overlay \
        -o "lowerdir=/$d,upperdir=$b/build/layer/$d,workdir=$b/build/work/$d" "/$d"
done
mount -t tmpfs -o mode=1777 hadeploy-build-tmp /tmp
export DEBIAN_FRONTEND=noninteractive
WORKSTATION_ONLY='google-cloud-*'

purge=
for p in "$@"; do
    s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$s" in ""|*not-installed) ;; *) purge="$purge $p" ;; esac
done
if [ -n "$purge" ]; then
    dpkg --purge $purge
fi
# A bare Debian server has no workstation-only software's man pages: this machine's Cloud SDK
# ships ~16,600, which made the man-db trigger of every install on a host ~6x slower.
for p in $(dpkg-query -W -f='${Package}\n' "$WORKSTATION_ONLY" 2>/dev/null || true); do
    dpkg-query -L "$p" | grep '^/usr/share/man/' | while read -r f; do
        if [ -f "$f" ] || [ -L "$f" ]; then rm -f "$f"; fi
    done
done
if command -v mandb >/dev/null 2>&1; then mandb -q 2>/dev/null || true; fi
rm -f /usr/sbin/policy-rc.d
rm -f /etc/ssh/ssh_host_*

if ! id hadeploy >/dev/null 2>&1; then
    useradd --create-home --user-group --shell /bin/bash --comment 'hadeploy lab operator' hadeploy
fi
mkdir -p /home/hadeploy
usermod --password '*' hadeploy
chown hadeploy:hadeploy /home/hadeploy
printf 'hadeploy ALL=(ALL:ALL) NOPASSWD: ALL\n' >/etc/sudoers.d/hadeploy
chmod 0440 /etc/sudoers.d/hadeploy
for f in bashrc profile; do
    if [ -f "/usr/share/base-files/dot.$f" ]; then
        cp "/usr/share/base-files/dot.$f" "/root/.$f"
    else
        cp "/etc/skel/.$f" "/root/.$f"
    fi
done
printf '%s' "$dropin" >/etc/ssh/sshd_config.d/hadeploy-lab.conf

rm -f /etc/apt/sources.list
printf 'deb [trusted=yes] file:%s ./\n' "$repo_mnt" >/etc/apt/sources.list.d/hadeploy-lab.list
mkdir -p "$repo_mnt" /var/lib/apt/lists/partial
mount --bind -o ro "$b/repo" "$repo_mnt"
apt-get -q update
umount "$repo_mnt"

rm -f /etc/resolv.conf
printf '# hadeploy lab: no DNS here; lab hosts are in /etc/hosts\n' >/etc/resolv.conf
"""


def _recipe_key(repo: AptRepo, packages_bare: Sequence[str]) -> str:
    status = hashlib.sha256(Path("/var/lib/dpkg/status").read_bytes()).hexdigest()
    blob = json.dumps(
        {
            "status": status,
            "bare": sorted(set(packages_bare)),
            "repo": repo.index_digest,
            # Any change to how the layer is made (this module, the layer helpers) rebuilds it.
            "recipe": [hashlib.sha256(Path(m.__file__ or "").read_bytes()).hexdigest()
                       for m in (sys.modules[__name__], overlay)],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _shadowed_files(layer: Path) -> dict[str, list[int]]:
    """Workstation files the layer shadows (copied up or replaced): path -> [size, mtime_ns]."""
    shadowed: dict[str, list[int]] = {}
    for directory, dirnames, filenames in os.walk(layer):
        if Path(directory) == layer:
            dirnames[:] = [d for d in dirnames if d not in UNSHARED_DIRS]
        for name in [*filenames, *dirnames]:
            entry = Path(directory) / name
            if entry.is_dir() and not entry.is_symlink():
                continue
            real = Path("/") / entry.relative_to(layer)
            try:
                info = real.lstat()
            except FileNotFoundError:
                continue
            if not is_whiteout(entry) and str(real) not in _REPLACED:
                shadowed[str(real)] = [info.st_size, info.st_mtime_ns]
    return shadowed


def _still_valid(manifest: Path) -> bool:
    try:
        recorded = json.loads(manifest.read_text())["shadowed"]
    except (FileNotFoundError, ValueError, KeyError):
        return False
    for path, (size, mtime) in recorded.items():
        try:
            info = Path(path).lstat()
        except FileNotFoundError:
            return False
        if info.st_size != size or info.st_mtime_ns != mtime:
            return False
    return True


def ensure_base_layer(cache: Path, repo: AptRepo, packages_bare: Sequence[str]) -> Path:
    """Return a valid base layer (one subdir per overlaid directory), building it if needed."""
    check_package_names(packages_bare)
    bases = cache / "base"
    key = _recipe_key(repo, packages_bare)
    final = bases / key
    with cache_lock(cache):
        if _still_valid(final / "manifest.json"):
            os.utime(final)
            return final / "layer"
        shutil.rmtree(final, ignore_errors=True)
        build = bases / f".build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        layer, work = build / "layer", build / "work"
        layer.mkdir(parents=True)
        make_upper_roots(layer, work)
        for rel in ("etc/apt/sources.list.d", "var/lib/apt/lists"):
            make_opaque_dir(layer, PurePosixPath(rel))
        argv = [
            "unshare", "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "--mount-proc",
            "--propagation", "private", "--", "/bin/sh", "-c", _BUILD_SCRIPT, "build-base",
            str(build), str(repo.path), REPO_MOUNTPOINT, _SSHD_DROPIN,
            *packages_bare,
        ]
        env = dict(CLEAN_ENV, DEBIAN_FRONTEND="noninteractive")
        try:
            run(argv, what="build the lab's base layer", env=env, timeout=900)
            shutil.rmtree(work)
            manifest = {"built": time.time(), "bare": list(packages_bare),
                        "shadowed": _shadowed_files(layer)}
            (build / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
            build.replace(final)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        _prune(bases, keep=final)
    return final / "layer"


def _prune(bases: Path, keep: Path) -> None:
    """Keep the newest few base layers (another branch may use another one) and drop the rest."""
    others = sorted(
        (p for p in bases.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in others[_KEEP_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def _owner_ids(layer: Path, user: str) -> tuple[int, int]:
    for line in (layer / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user:
            return int(fields[2]), int(fields[3])
    raise LabError(f"the base layer has no user {user}")


def _write_private(path: Path, text: str, uid: int, gid: int) -> None:
    path.parent.mkdir(mode=0o700, exist_ok=True)
    os.chown(path.parent, uid, gid)
    path.write_text(text)
    path.chmod(0o600)
    os.chown(path, uid, gid)


def stage(core: ProcRef, layer: Path, authorized_key: str, etc_hosts: str) -> None:
    """Copy the base layer into a tmpfs of the core's mount namespace and add this lab's files.

    The per-lab files (authorized keys, /etc/hosts) go into the staged copy, never into the
    cached layer, so one cached layer serves every lab.
    """
    run(
        ["nsenter", "-t", str(core.pid), "-m", "--", "/bin/sh", "-c",
         'mount -t tmpfs -o mode=0755 hadeploy-lab-base "$1" && mkdir "$2" && cp -a "$3/." "$2/"',
         "stage", STAGE_MOUNT, STAGE_BASE, str(layer)],
        what="stage the base layer",
    )
    staged = Path(f"/proc/{core.pid}/root{STAGE_BASE}")
    _write_private(staged / "root" / ".ssh" / "authorized_keys", authorized_key, 0, 0)
    uid, gid = _owner_ids(staged, USER)
    _write_private(staged / "home" / USER / ".ssh" / "authorized_keys", authorized_key, uid, gid)
    hosts = staged / "etc" / "hosts"
    hosts.write_text(etc_hosts)
    hosts.chmod(0o644)
