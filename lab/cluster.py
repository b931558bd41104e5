"""`Lab`: bring a set of simulated hosts up, find them again, tear them down.

    lab = Lab.up(["lb1", "lb2", "lb3"], Path("/var/tmp/hadeploy-lab"))
    lab.hosts["lb1"].exec("hostname").stdout        # 'lb1\\n'
    # ssh -F /var/tmp/hadeploy-lab/ssh_config lb1
    Lab.load(Path("/var/tmp/hadeploy-lab")).down()

Only one lab can be up per slot at a time (see network.lab_slot: HADEPLOY_LAB_SLOT).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lab import aptrepo, baselayer, hosts, network, procs, sshd
from lab.errors import LabError
from lab.hosts import LabHost
from lab.state import HostState, LabState

DEFAULT_STATE_DIR = Path("/var/tmp/hadeploy-lab" + (str(network.SLOT) if network.SLOT else ""))
DEFAULT_PACKAGES_BARE: tuple[str, ...] = ("haproxy", "keepalived")

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNSAFE_PATH = re.compile(r"[\s,:\\\"']")
_REQUIRED_TOOLS = ("unshare", "nsenter", "ip", "tini", "ssh-keygen", "apt-get", "apt-cache",
                   "dpkg-scanpackages")
# Files the lab writes into its state directory (removed by `down`).
_STATE_FILES = ("lab.json", sshd.CLIENT_KEY, sshd.CLIENT_KEY + ".pub", sshd.SSH_CONFIG,
                sshd.KNOWN_HOSTS, "core.log", "runlevel.utmp")


class Lab:
    """A running lab: its hosts by name, and the files an SSH client needs to reach them."""

    def __init__(self, state: LabState) -> None:
        self._state = state
        self.hosts: dict[str, LabHost] = {name: LabHost(state, name) for name in state.hosts}

    def __repr__(self) -> str:
        return f"Lab({self.state_dir}, hosts={list(self.hosts)})"

    @property
    def state_dir(self) -> Path:
        """The directory holding lab.json, the SSH files and the hosts' disks."""
        return self._state.state_dir

    @property
    def ssh_config(self) -> Path:
        """`ssh -F` this file to reach any host by name (as user hadeploy)."""
        return self.state_dir / sshd.SSH_CONFIG

    @property
    def known_hosts(self) -> Path:
        """Every host's SSH host keys, under its name and its address."""
        return self.state_dir / sshd.KNOWN_HOSTS

    @property
    def identity_file(self) -> Path:
        """Private key authorised for root and hadeploy on every host."""
        return self.state_dir / sshd.CLIENT_KEY

    @classmethod
    def up(
        cls,
        names: Sequence[str],
        state_dir: Path,
        packages_bare: Sequence[str] = DEFAULT_PACKAGES_BARE,
        *,
        repo_packages: Sequence[str] = aptrepo.DEFAULT_PACKAGES,
        cache_dir: Path | None = None,
    ) -> Lab:
        """Bring up one bare Debian host per name (198.18.0.11, .12, ... in order).

        `packages_bare` are purged from the hosts even if the workstation has them;
        `repo_packages` (plus dependencies) are installable on the hosts with apt-get,
        offline. On any failure everything started so far is torn down again.
        """
        _check_prerequisites(names, state_dir)
        state_dir = state_dir.resolve()
        _clear_stale(state_dir)
        if not state_dir.exists():
            state_dir.mkdir(mode=0o700, parents=True)
        cache = (cache_dir if cache_dir is not None else aptrepo.cache_dir()).resolve()
        state = LabState(
            state_dir=state_dir,
            cache_dir=cache,
            repo_dir=cache / "debs",
            hosts={name: HostState(name, network.host_address(i)) for i, name in enumerate(names)},
            packages_bare=list(packages_bare),
            repo_packages=list(repo_packages),
        )
        state.save()
        lab = cls(state)
        try:
            lab._build(repo_packages)
        except BaseException:
            lab.down()
            raise
        return lab

    def _build(self, repo_packages: Sequence[str]) -> None:
        state = self._state
        with ThreadPoolExecutor(max_workers=2) as pool:
            repo_job = pool.submit(aptrepo.ensure_repo, repo_packages, state.cache_dir)
            host_keys = _make_keys(state)
            public_key = sshd.make_client_key(state.state_dir)
            repo = repo_job.result()
        state.base_dir = baselayer.ensure_base_layer(state.cache_dir, repo, state.packages_bare)
        state.save()
        state.core = network.start_core(state.state_dir)
        state.save()
        network.setup_bridge(state.core)
        network.attach_workstation(state.core)
        baselayer.stage(state.core, state.base_dir, public_key, _etc_hosts(state))
        sshd.write_known_hosts(
            state.state_dir, [(h.name, h.address, host_keys[h.name]) for h in state.hosts.values()]
        )
        sshd.write_ssh_config(state.state_dir, [(h.name, h.address) for h in state.hosts.values()])
        for name in state.hosts:
            hosts.prepare_disk(state, name)
        hosts.start_hosts(state, list(state.hosts.values()))
        state.complete = True
        state.save()

    @classmethod
    def load(cls, state_dir: Path) -> Lab:
        """Attach to the lab recorded in `state_dir/lab.json` (possibly half-built)."""
        return cls(LabState.load(state_dir.resolve()))

    def is_up(self) -> bool:
        """True if the lab was completely built and its core and every host still run."""
        state = self._state
        return (
            state.complete
            and state.core is not None
            and procs.is_alive(state.core)
            and all(h.init is not None and procs.is_alive(h.init) for h in state.hosts.values())
        )

    def down(self) -> None:
        """Stop every process of the lab (by recorded PID) and remove its files. Idempotent.

        The namespaces, mounts, veths and the bridge go with the processes that hold them.
        """
        state = self._state
        hosts.stop_hosts(list(state.hosts.values()))
        procs.stop(state.core)
        state.core = None
        procs.sweep(str(state.state_dir))
        network.detach_workstation()
        shutil.rmtree(state.state_dir / "hosts", ignore_errors=True)
        for name in _STATE_FILES:
            (state.state_dir / name).unlink(missing_ok=True)
        state.complete = False

    @property
    def cache_dir(self) -> Path:
        """The persistent cache this lab uses (.debs, base layers, saved installations)."""
        return self._state.cache_dir

    @property
    def base_layer(self) -> Path | None:
        """The cached base layer this lab's hosts are built on (None before it is made)."""
        return self._state.base_dir

    def save_disk(self, name: str, dest: Path) -> None:
        """Copy host `name`'s disk (its overlay upper layers, one dir per LAB_DIRS entry) to
        `dest`, which must not exist. The host is stopped for the copy and started again on
        the same disk (a reboot: its daemons are gone, its files stay)."""
        host = self._state.hosts[name]
        if dest.exists():
            raise LabError(f"{dest} exists: will not copy {name}'s disk over it")
        hosts.stop_hosts([host])
        self._state.save()
        try:
            procs.run(["cp", "-a", str(hosts.host_dir(self._state, name) / "disk" / "upper"),
                       str(dest)], what=f"copy {name}'s disk", timeout=600)
        finally:
            hosts.start_hosts(self._state, [host])

    def reset_host(self, name: str, seed: Path | None = None) -> None:
        """Like `LabHost.reset()` (a fresh, bare host), but with the files of `seed` (a copy
        made by `save_disk`) laid into its new disk before it starts."""
        if seed is None:
            self.hosts[name].reset()
            return
        host = self._state.hosts[name]
        hosts.stop_hosts([host])
        self._state.save()
        disk = hosts.host_dir(self._state, name) / "disk"
        old = disk.with_name(f"disk.old.{time.monotonic_ns()}")
        if disk.exists():
            disk.rename(old)
        hosts.prepare_disk(self._state, name)
        procs.run(["cp", "-a", f"{seed}/.", str(disk / "upper")],
                  what=f"lay {seed} into {name}'s disk", timeout=600)
        hosts.start_hosts(self._state, [host])
        shutil.rmtree(old, ignore_errors=True)

    def rebuild(self) -> None:
        """Tear the lab down and bring the same hosts up again, fresh, in this object."""
        names = list(self._state.hosts)
        self.down()
        fresh = Lab.up(names, self.state_dir, self._state.packages_bare,
                       repo_packages=self._state.repo_packages, cache_dir=self._state.cache_dir)
        self._state = fresh._state
        self.hosts = fresh.hosts


def _check_prerequisites(names: Sequence[str], state_dir: Path) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, veths)")
    missing = [tool for tool in _REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        raise LabError(
            f"missing tools for the lab: {', '.join(missing)} "
            "(apt-get install tini iproute2 util-linux openssh-server dpkg-dev)"
        )
    if not Path("/usr/sbin/sshd").exists():
        raise LabError("/usr/sbin/sshd missing (apt-get install openssh-server)")
    if not names:
        raise LabError("a lab needs at least one host name")
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise LabError(f"invalid host names (lowercase letters, digits, '-'): {', '.join(bad)}")
    if len(set(names)) != len(names):
        raise LabError(f"duplicate host names: {', '.join(names)}")
    network.host_address(len(names) - 1)
    if _UNSAFE_PATH.search(str(state_dir.resolve())):
        raise LabError(f"{state_dir}: the state directory path must not contain spaces, ',' or ':'")


def _clear_stale(state_dir: Path) -> None:
    """Refuse to start over a lab that runs; clean up after one that died."""
    if not (state_dir / "lab.json").exists():
        return
    old = Lab.load(state_dir)
    state = old._state
    running = [r for r in [state.core, *(h.init for h in state.hosts.values())] if r is not None]
    if any(procs.is_alive(r) for r in running):
        raise LabError(
            f"a lab is already up in {state_dir}: take it down first "
            f"(python -m lab down --state-dir {state_dir})"
        )
    old.down()


def _make_keys(state: LabState) -> dict[str, list[str]]:
    return {
        name: sshd.make_host_keys(hosts.host_dir(state, name) / "hostkeys", name)
        for name in state.hosts
    }


def _etc_hosts(state: LabState) -> str:
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
        "",
        "# hadeploy lab",
        f"{network.WORKSTATION_ADDRESS}\tworkstation",
    ]
    lines += [f"{h.address}\t{h.name}" for h in state.hosts.values()]
    return "\n".join(lines) + "\n"
