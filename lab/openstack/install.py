"""Installing a plane's packages on a freshly reset host, cached as a saved overlay upper layer.

After a real `apt-get install` (debconf preseeded so nothing is configured, service starts
blocked by a policy-rc.d), the host's disk is saved under `<cache>/<dir>/<key>/` minus the
host-specific files; the next provisioning lays that copy into a freshly reset host instead of
installing. The copy holds no secret (nothing is configured yet) and its key covers the base
layer, the repository's index, the package list, the debconf answers and this recipe, so it
is never stale. Each plane has its own directory, so one plane's saves never prune another's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from lab import aptrepo, overlay
from lab.cluster import Lab
from lab.errors import LabError
from lab.openstack.hostops import run

# $@: packages. Service starts are blocked while the packages install (and unblocked
# whatever happens); the debconf answers come first.
_INSTALL_SCRIPT = r"""
set -eu
export DEBIAN_FRONTEND=noninteractive
printf '#!/bin/sh\n# hadeploy lab: no service starts while installing\nexit 101\n' \
    >/usr/sbin/policy-rc.d
chmod 0755 /usr/sbin/policy-rc.d
trap 'rm -f /usr/sbin/policy-rc.d' EXIT
printf '%s' "$PRESEED" | debconf-set-selections
apt-get -q update >/dev/null
log=/var/log/hadeploy-lab-install.log
: >"$log"
# openstack-dashboard's postinst compresses Horizon's static files, and pyScss fails on one
# now and then (a syntax error in a file it compiles fine the next time; one full-plane
# install in a cold-cache CI run): what dpkg left half-configured is configured again, at
# most twice, as hadeploy's own install does once (hadeploy.ops.packages.configure_again).
tries=0
until apt-get install -y -q --no-install-recommends "$@" >>"$log" 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 2 ]; then
        tail -n 30 "$log" >&2
        exit 1
    fi
    echo "hadeploy lab: the install failed; configuring what dpkg left half-configured" >>"$log"
    dpkg --configure -a >>"$log" 2>&1 || true
done
"""

# Host files that must not travel in a saved installation (relative to the disk's upper),
# and secrets packages generate when they install (rabbitmq-server's Erlang cookie; a
# Horizon secret key store, should one survive its postinst): recipes make their own.
_HOST_SPECIFIC = (
    "etc/hostname", "etc/machine-id", "etc/hosts", "etc/ssh/ssh_host_*",
    "root/.ssh", "home/*/.ssh", "var/log/syslog*", "var/log/hadeploy-lab-install.log",
    "root/.bash_history", "root/.python_history",
    "var/lib/rabbitmq/.erlang.cookie", "var/lib/openstack-dashboard/secret-key/.secret_key_store",
)
_KEEP_INSTALLS = 2


def install_key(lab: Lab, packages: Sequence[str], preseed: str) -> str:
    """The saved installation's key: everything the installed files depend on."""
    base = lab.base_layer
    if base is None:
        raise LabError("the lab has no base layer: is it up?")
    try:
        base_manifest = (base.parent / "manifest.json").read_bytes()
    except FileNotFoundError as err:
        raise LabError(f"the lab's base layer {base} has no manifest") from err
    try:
        index = (lab.cache_dir / "debs" / "Packages").read_bytes()
    except FileNotFoundError as err:
        raise LabError(f"the lab's apt repository in {lab.cache_dir} has no index") from err
    blob = json.dumps({
        "base": str(base),
        # The install runs `apt-get update` first: the repository as it is now counts.
        "repo_index": hashlib.sha256(index).hexdigest(),
        "base_manifest": hashlib.sha256(base_manifest).hexdigest(),
        "packages": sorted(packages),
        "preseed": preseed,
        "script": _INSTALL_SCRIPT,
        "host_specific": _HOST_SPECIFIC,
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def is_cached(lab: Lab, cache_name: str, packages: Sequence[str], preseed: str) -> bool:
    """Whether `install` would lay a saved installation in rather than run apt-get."""
    saved = lab.cache_dir / cache_name / install_key(lab, packages, preseed)
    return (saved / "complete").is_file()


def install(lab: Lab, host_name: str, cache_name: str, packages: Sequence[str],
            preseed: str) -> None:
    """Reset the host, then install `packages` (or lay a saved installation in)."""
    cache = lab.cache_dir / cache_name
    saved = cache / install_key(lab, packages, preseed)
    with aptrepo.cache_lock(lab.cache_dir):
        if (saved / "complete").is_file():
            os.utime(saved)
            lab.reset_host(host_name, seed=saved / "upper")
            return
    lab.reset_host(host_name)
    host = lab.hosts[host_name]
    run(host, _INSTALL_SCRIPT, list(packages), "install the OpenStack packages",
        timeout=1800, env={"PRESEED": preseed})
    build = cache / f".build-{os.getpid()}"
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    try:
        lab.save_disk(host_name, build / "upper")
        _drop_host_specific(build / "upper", lab)
        (build / "complete").write_text(json.dumps({"saved": time.time()}) + "\n")
        with aptrepo.cache_lock(lab.cache_dir):
            if not saved.exists():
                build.replace(saved)
            _prune(cache, keep=saved)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _drop_host_specific(upper: Path, lab: Lab) -> None:
    for pattern in _HOST_SPECIFIC:
        for path in upper.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    # The whiteouts hiding the lab's state and cache directories are the lab's, not the
    # installation's: each lab's reset makes its own.
    for hidden in (lab.state_dir, lab.cache_dir):
        if overlay.lab_dir_of(hidden) is not None:
            target = upper / Path(*hidden.resolve().parts[1:])
            with contextlib.suppress(FileNotFoundError):
                if overlay.is_whiteout(target):
                    target.unlink()


def _prune(cache: Path, keep: Path) -> None:
    others = sorted(
        (p for p in cache.iterdir() if p.is_dir() and p != keep and not p.name.startswith(".")),
        key=lambda p: p.stat().st_mtime, reverse=True,
    )
    for old in others[_KEEP_INSTALLS - 1:]:
        shutil.rmtree(old, ignore_errors=True)
