"""Simulated hosts: start one (namespaces, init, veth, boot), and `LabHost`, the handle tests
use to run commands in a host and to stop, reboot, reset or unplug it.

A host is a set of namespaces (network, mount, UTS, IPC, PID) whose PID 1 is `tini` (it
reaps orphans, so a dead daemon never lingers as a zombie that still passes `kill -0`).
Its mount namespace is cloned from the lab core's, where the base layer is staged. Its disk
is the overlay upper layers under `STATE/hosts/NAME/disk`.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hadeploy.errors import CommandFailed
from hadeploy.transport.base import Result
from lab import baselayer, network, procs, sshd
from lab.boot import BOOT_SCRIPT, runlevel_utmp
from lab.errors import LabError
from lab.overlay import hide_paths, lower_layers, make_upper_roots
from lab.state import HostState, LabState


class LabCommandFailed(LabError, CommandFailed):
    """A command run in a lab host with `check=True` exited non-zero."""


def host_dir(state: LabState, name: str) -> Path:
    """Where a host keeps its disk, host keys and console log on the workstation."""
    return state.state_dir / "hosts" / name


def _disk(state: LabState, name: str) -> Path:
    return host_dir(state, name) / "disk"


def _machine_id(state: LabState, name: str) -> str:
    """A stable machine id per host and lab (real servers each have their own)."""
    return hashlib.sha256(f"{state.state_dir}:{name}".encode()).hexdigest()[:32]


def _runlevel_file(state: LabState) -> Path:
    path = state.state_dir / "runlevel.utmp"
    if not path.exists():
        path.write_bytes(runlevel_utmp())
    return path


def prepare_disk(state: LabState, name: str) -> None:
    """Create an empty disk for a host (upper/ and work/ per overlaid directory)."""
    disk = _disk(state, name)
    make_upper_roots(disk / "upper", disk / "work")
    hide_paths(disk / "upper", [state.state_dir, state.cache_dir])


def _spawn(state: LabState, host: HostState) -> None:
    """Start the host's namespaces and init; record both processes before anything else."""
    if state.core is None:
        raise LabError("the lab core is not running")
    argv = [
        "nsenter", "-t", str(state.core.pid), "-m", "--",
        "unshare", "--net", "--mount", "--uts", "--ipc", "--pid", "--kill-child", "--mount-proc",
        "--propagation", "private", "--", "tini", "--", "sleep", "infinity",
    ]
    host.spawner = procs.spawn(argv, host_dir(state, host.name) / "console.log", "unshare",
                               marker=str(state.state_dir))
    state.save()
    host.init = procs.find_child(host.spawner, "tini")
    state.save()


def _boot(state: LabState, host: HostState) -> None:
    """Run the boot script inside the host (mounts, identity, network, syslog, sshd)."""
    if host.init is None:
        raise LabError(f"{host.name}: no init to boot")
    args = [
        host.name,
        f"{host.address}/{network.PREFIX_LEN}",
        str(_disk(state, host.name)),
        str(host_dir(state, host.name) / "hostkeys"),
        str(state.repo_dir),
        baselayer.REPO_MOUNTPOINT,
        baselayer.STAGE_MOUNT,
        _machine_id(state, host.name),
        str(_runlevel_file(state)),
        *lower_layers(baselayer.STAGE_BASE),
    ]
    result = subprocess.run(
        ["nsenter", "-t", str(host.init.pid), "-m", "-u", "-i", "-n", "-p", "--",
         "/bin/sh", "-c", BOOT_SCRIPT, "boot", *args],
        capture_output=True, text=True, env=procs.CLEAN_ENV, cwd="/", timeout=120, check=False,
    )
    if result.returncode != 0:
        detail = "\n".join(result.stderr.strip().splitlines()[-12:])
        raise LabError(f"{host.name}: boot failed (exit {result.returncode})\n{detail}")
    host.booted = True
    state.save()


def start_hosts(state: LabState, hosts: Sequence[HostState]) -> None:
    """Start several hosts: spawn them, plug them into the bridge in one go, boot in parallel.

    If any of them fails, all of them are stopped again: a host whose boot did not finish
    has no private mounts and must never run commands (they would change the workstation).
    """
    core = state.core
    if core is None:
        raise LabError("the lab core is not running")
    try:
        for host in hosts:
            _spawn(state, host)
        network.plug_hosts(core, [(h.init, h.address) for h in hosts if h.init is not None])
        _parallel([functools.partial(_boot, state, h) for h in hosts])
    except BaseException:
        stop_hosts(hosts)
        state.save()
        raise


def stop_hosts(hosts: Sequence[HostState]) -> None:
    """Kill every process of these hosts (SIGKILL to each init) and wait until they are gone."""
    for host in hosts:
        host.booted = False
        procs.stop(host.init)
    for host in hosts:
        # The spawner (`unshare --fork`) reaps the dead init and exits on its own. Killing it
        # before it has done so would orphan the init's zombie to PID 1, which in a container
        # may never reap it; so it gets a moment first, and SIGKILL only if it hangs.
        procs.stop(host.spawner, grace=5.0)
        host.init = None
        host.spawner = None


def _parallel(jobs: Sequence[Callable[[], None]]) -> None:
    """Run jobs in threads; raise the first failure after all have finished."""
    if len(jobs) == 1:
        jobs[0]()
        return
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        futures = [pool.submit(job) for job in jobs]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error


class LabHost:
    """One simulated Debian host of a running lab."""

    def __init__(self, state: LabState, name: str) -> None:
        self._state = state
        self.name = name

    def __repr__(self) -> str:
        return f"LabHost({self.name!r}, {self.address})"

    @property
    def _host(self) -> HostState:
        return self._state.hosts[self.name]

    @property
    def address(self) -> str:
        """The host's address on the lab network (198.18.0.x)."""
        return self._host.address

    @property
    def pid(self) -> int:
        """PID of the host's init (its PID 1) in the root namespace."""
        host = self._host
        if host.init is None or not host.booted or not procs.is_alive(host.init):
            raise LabError(f"{self.name} is not running")
        return host.init.pid

    def exec(
        self,
        argv_or_shell: str | Sequence[str],
        check: bool = True,
        input: str | None = None,
        timeout: float | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as root inside the host (a string goes through /bin/sh -c).

        Runs via `nsenter -t PID -m -u -i -n -p` with a clean environment. As with ssh, the
        call returns when the command's output closes: something left running in the
        background must redirect its output (`setsid CMD </dev/null >/dev/null 2>&1 &`).
        With `check`, a non-zero exit raises `LabCommandFailed` (a `LabError` and a
        `CommandFailed`) carrying the exit code and output.
        """
        argv = ["/bin/sh", "-c", argv_or_shell] if isinstance(argv_or_shell, str) \
            else list(argv_or_shell)
        full = ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-p", "--", *argv]
        try:
            result = subprocess.run(
                full, input=input, capture_output=True, text=True, env=procs.CLEAN_ENV,
                cwd="/", timeout=timeout, check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise LabError(f"{self.name}: {argv} took more than {timeout} s") from err
        if check and result.returncode != 0:
            command = argv_or_shell if isinstance(argv_or_shell, str) else " ".join(argv)
            raise LabCommandFailed(Result(self.name, command, result.returncode,
                                          result.stdout, result.stderr))
        return result

    def stop_sshd(self) -> None:
        """Stop the host's sshd listener (new connections are refused)."""
        self.exec(sshd.STOP_SSHD)

    def start_sshd(self) -> None:
        """Start the host's sshd and wait until it is ready."""
        self.exec(sshd.START_SSHD)

    def kill_sshd(self) -> None:
        """Kill every sshd of the host outright (sessions too), as a crash would, and wait
        until port 22 refuses connections."""
        self.exec(sshd.KILL_SSHD)

    def sshd_running(self) -> bool:
        """True if the host's sshd (from /run/sshd.pid) is running."""
        return self.exec(sshd.SSHD_RUNNING, check=False).returncode == 0

    def link_down(self) -> None:
        """Unplug the host: eth0 down inside it (as if its cable were pulled)."""
        self.exec(["ip", "link", "set", network.HOST_IF, "down"])

    def link_up(self) -> None:
        """Plug the host back in (eth0 up; the address stays configured)."""
        self.exec(["ip", "link", "set", network.HOST_IF, "up"])

    def regenerate_host_keys(self) -> None:
        """Give sshd new host keys; known_hosts keeps the old ones, so clients see a change.

        `reset()` brings back the keys known_hosts lists.
        """
        self.exec(sshd.NEW_HOST_KEYS + sshd.STOP_SSHD + sshd.START_SSHD)

    def reboot(self) -> None:
        """Kill every process of the host and start it again on the same disk."""
        stop_hosts([self._host])
        self._state.save()
        start_hosts(self._state, [self._host])

    def reset(self) -> None:
        """Back to a fresh, bare host: stop it, wipe its disk, start it again.

        Its SSH host keys are the ones in the lab's known_hosts again.
        """
        stop_hosts([self._host])
        self._state.save()
        disk = _disk(self._state, self.name)
        old = disk.with_name(f"disk.old.{time.monotonic_ns()}")
        if disk.exists():
            disk.rename(old)
        prepare_disk(self._state, self.name)
        start_hosts(self._state, [self._host])
        shutil.rmtree(old, ignore_errors=True)
