"""The SSH transport: with `links`, the only modules that import paramiko (and fabric).

One connection per host, opened on first use and reused for the whole run. Scripts run as
`sh -c` (through `sudo -n` for a non-root user) on a raw paramiko channel, so stdin is
binary-safe and a command costs one round trip. Library and socket errors become
`TransportError`/`HostKeyError` naming the host and the fix.

A sudo password, when sudo asks for one, comes from the environment variable named by
ssh.sudo_password_env or, when that is unset and a terminal is attached, from a getpass
prompt (once per process); it is fed to `sudo -S` on stdin, never on a command line.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from hadeploy.errors import CommandFailed, HostKeyError, TransportError
from hadeploy.inventory.model import Node, SshSettings
from hadeploy.quoting import q
from hadeploy.transport.base import Result
from hadeploy.transport.dial import Dialer, Unreachable, no_delay
from hadeploy.transport.hostkeys import RecordUnknown, RefuseUnknown
from hadeploy.transport.links import DirectLink, Link, fabric_link, paramiko

SUDO_ERRORS = ("a password is required", "a terminal is required", "is not in the sudoers",
               "may not run sudo")

# Passwords typed at the prompt, by variable name: asked once per process, whatever the
# number of hosts (probed in parallel) and transports (a plan, then the run).
_TYPED_PASSWORDS: dict[str, str] = {}
_PROMPT_LOCK = threading.Lock()


def _no_delay(conn: Link) -> None:
    """`no_delay` on the connection's socket when fabric dialled it (an ssh_config or a
    gateway): the dialler's own sockets have it from the start, the handshake included."""
    transport = conn.client.get_transport()
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):  # not through a gateway (a paramiko channel)
        no_delay(sock)


def dead_peer_options(connect_timeout: float) -> list[tuple[int, int, int]]:
    """(level, option, value) that make the kernel close a connection to a host that is gone.

    A host whose link goes down or that loses power sends nothing, not even a reset: without
    these, a command's output is awaited forever (TCP's own retries last ~15 minutes) and
    the run hangs. With them, a silent host is probed every `connect_timeout` seconds, and a
    connection whose probes or data stay unanswered for three connect timeouts is closed, so
    the command fails as a lost connection and the journal is resumable. A long command
    stays fine: the host's kernel answers the probes while it runs. Options this platform
    lacks are left out (macOS names TCP_KEEPIDLE TCP_KEEPALIVE and has no user timeout).
    """
    every = max(1, round(connect_timeout))
    wanted = [(socket.SOL_SOCKET, "SO_KEEPALIVE", 1),
              (socket.IPPROTO_TCP, "TCP_KEEPIDLE", every),
              (socket.IPPROTO_TCP, "TCP_KEEPINTVL", every),
              (socket.IPPROTO_TCP, "TCP_KEEPCNT", 3),
              (socket.IPPROTO_TCP, "TCP_USER_TIMEOUT", 3 * every * 1000)]
    return [(level, getattr(socket, name), value) for level, name, value in wanted
            if hasattr(socket, name)]


def _detect_dead_peer(conn: Link, connect_timeout: float) -> None:
    """Apply `dead_peer_options` to the connection's socket (not through a gateway, whose
    own connection carries the channel)."""
    transport = conn.client.get_transport()
    sock = getattr(transport, "sock", None)
    if isinstance(sock, socket.socket):
        for level, option, value in dead_peer_options(connect_timeout):
            with contextlib.suppress(OSError):
                sock.setsockopt(level, option, value)


def sudo_password(env: str, user: str) -> str | None:
    """The sudo password: `$env` if set, else typed at a getpass prompt when stdin is a
    terminal (the operator is there to answer), else None.

    An operator who leaves the variable unset on purpose expects to be asked, as sudo
    itself would; a run without a terminal (CI, cron) cannot be asked and must fail instead.
    """
    value = os.environ.get(env)
    if value:
        return value
    with _PROMPT_LOCK:
        if env in _TYPED_PASSWORDS:
            return _TYPED_PASSWORDS[env]
        if not sys.stdin.isatty():
            return None
        try:
            typed = getpass.getpass(f"sudo password for {user} on the hosts (${env} is not "
                                    "set): ")
        except EOFError:
            return None
        if not typed:
            return None
        _TYPED_PASSWORDS[env] = typed
        return typed


def wrap(script: str, sudo: bool, with_password: bool = False) -> str:
    """The command line that runs `script` with sh, as root through sudo when needed."""
    command = f"sh -c {q(script)}"
    if not sudo:
        return command
    if with_password:
        return f"sudo -S -k -p '' -- {command}"
    return f"sudo -n -- {command}"


class SshTransport:
    """Runs scripts on inventory nodes over reused SSH connections."""

    #: A round trip costs far more than a few more read-only probes in it (see `Transport`).
    probe_ahead = True

    def __init__(self, settings: SshSettings, nodes: list[Node]) -> None:
        self.settings = settings
        self.addresses = {n.name: n.connect_to for n in nodes}
        self._connections: dict[str, Link] = {}
        self._kept: list[paramiko.Channel] = []
        self._locks = {name: threading.Lock() for name in self.addresses}
        self._password_needed: dict[str, bool] = {}
        self.round_trips_by_host: dict[str, int] = {}
        self.connections_opened: dict[str, int] = {}
        self.first_connection: float | None = None  # Unix time of the first attempt
        self._opening: dict[str, Future[Link]] = {}
        self._sent_ahead: dict[tuple[str, str], Future[Result]] = {}
        self._dialer: Dialer | None = None

    # -- connections -----------------------------------------------------------------------

    def connect_ahead(self, dialer: Dialer, first: str | None = None) -> None:
        """Open the connections to the hosts `dialer` dials, in background threads, while the
        caller builds the run: each host's first command waits for its own, and gets its
        error (the same as connecting then) if it failed. `first`: a script each thread
        runs as soon as its connection is up (the run's first round trip); a later `run` of
        that very script on that host takes its result instead of running it again."""
        self.first_connection = dialer.started
        self._dialer = dialer
        for name in self.addresses:
            if name in dialer:
                opening: Future[Link] = Future()
                self._opening[name] = opening
                ran: Future[Result] | None = None
                if first is not None:
                    ran = self._sent_ahead[(name, first)] = Future()
                threading.Thread(target=self._open_into, args=(name, opening, first, ran),
                                 name=f"ssh-{name}", daemon=True).start()

    def _open_into(self, name: str, opening: Future[Link], first: str | None,
                   ran: Future[Result] | None) -> None:
        try:
            opening.set_result(self._open(name))
        except BaseException as exc:  # raised where the host's command runs
            opening.set_exception(exc)
        if first is None or ran is None:
            return
        try:
            ran.set_result(self._run(name, first, None, None))
        except BaseException as exc:  # raised where that script is run
            ran.set_exception(exc)

    def _connect(self, name: str) -> Link:
        conn = self._connections.pop(name, None)
        if conn is not None:
            if conn.is_connected:
                self._connections[name] = conn
                return conn
            # Dropped since its last command: the host may have rebooted or its sshd
            # restarted, and what this run read there may no longer hold. Fail the command
            # (the next one, a --resume, connects again and reads afresh).
            conn.close()  # let paramiko's thread go
            raise TransportError(
                name, f"connection to {self.addresses[name]} dropped since its last command "
                "(did the host reboot or its sshd restart?); nothing more was run there. The "
                "journal is resumable once the host is reachable again")
        opening = self._opening.pop(name, None)
        conn = opening.result() if opening is not None else self._open(name)
        self._connections[name] = conn
        return conn

    def _open(self, name: str) -> Link:
        """A new, hardened connection to `name` (on the socket dialled ahead, if any)."""
        if self.first_connection is None:
            self.first_connection = time.time()
        address = self.addresses[name]
        settings = self.settings
        known_hosts = Path(os.path.expanduser(settings.known_hosts))
        connect_kwargs: dict[str, object] = {"banner_timeout": settings.connect_timeout,
                                             "auth_timeout": settings.connect_timeout}
        if settings.identity:
            identity = os.path.expanduser(settings.identity)
            if not Path(identity).is_file():
                raise TransportError(
                    name, f"the private key {identity} (ssh.identity) does not exist; nothing "
                    "was run. Point ssh.identity at the key whose public half is in the "
                    "user's ~/.ssh/authorized_keys on the hosts")
            connect_kwargs["key_filename"] = [identity]
        conn: Link
        if settings.gateway or settings.config:
            conn = fabric_link(address, settings.user, settings.port, connect_kwargs,
                               settings.connect_timeout, settings.config, settings.gateway,
                               lambda link, host: self._harden(link, known_hosts, host))
        else:
            conn = DirectLink(address, settings.user, settings.port, connect_kwargs,
                              settings.connect_timeout)
        self._harden(conn, known_hosts, name)
        try:
            dialer = self._dialer
            if dialer is not None and name in dialer:
                # the TCP socket dialled ahead; the SSH handshake and host-key check run on it
                connect_kwargs["sock"] = dialer.take(name)
            conn.open()
        except BaseException as exc:
            conn.close()  # no half-open transport thread left behind
            error = self._connect_error(name, conn, exc)
            if error is None:
                raise
            raise error from exc
        _no_delay(conn)
        _detect_dead_peer(conn, settings.connect_timeout)
        self.connections_opened[name] = self.connections_opened.get(name, 0) + 1
        return conn

    def _connect_error(self, name: str, conn: Link,
                       exc: BaseException) -> TransportError | None:
        """The hadeploy error, naming host and fix, for a failed connection (None: not ours)."""
        settings = self.settings
        address = self.addresses[name]
        known_hosts = Path(os.path.expanduser(settings.known_hosts))
        if isinstance(exc, HostKeyError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyError(
                name,
                f"the host key of {exc.hostname} has CHANGED: {known_hosts} has "
                f"{exc.expected_key.fingerprint}, the host offers {exc.key.fingerprint}. This "
                "may be a man-in-the-middle attack; nothing was run. If the host was "
                f"reinstalled, remove the old key (ssh-keygen -R {exc.hostname} -f "
                f"{known_hosts}) and verify the new one",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            key = f" with the key {settings.identity}" if settings.identity else ""
            return TransportError(
                name,
                f"authentication failed for user {settings.user!r} at {address}{key}: "
                f"{str(exc).rstrip('.')}; nothing was run. Check ssh.user and ssh.identity, and "
                "that the public key is in the user's ~/.ssh/authorized_keys on the host",
            )
        if isinstance(exc, OSError | paramiko.SSHException | EOFError):
            why = str(exc) or type(exc).__name__
            if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError | Unreachable):
                # paramiko's wrapper ("[Errno None] Unable to connect") hides the real reason
                why = "; ".join(sorted({getattr(e, "strerror", None) or str(e)
                                        for e in exc.errors.values()}))
            elif isinstance(exc, TimeoutError):
                why = f"no answer within {settings.connect_timeout:g} s (ssh.connect_timeout)"
            return TransportError(
                name,
                f"cannot connect to {address} port {conn.port}: {why}. Nothing was run "
                "there. Check that the host is up and reachable and that ssh.port is right",
            )
        return None

    def _harden(self, conn: Link, known_hosts: Path, name: str) -> None:
        """Only the operator's known_hosts counts, and unknown keys are refused unless opted in."""
        client = conn.client
        # fabric preloads the system's keys
        client._system_host_keys = paramiko.HostKeys()  # type: ignore[attr-defined]
        client.get_host_keys().clear()
        if known_hosts.exists():
            client.load_host_keys(str(known_hosts))
        if self.settings.host_key_policy == "accept-new":
            client.set_missing_host_key_policy(RecordUnknown(known_hosts))
        else:
            client.set_missing_host_key_policy(RefuseUnknown(known_hosts, name))

    # -- commands --------------------------------------------------------------------------

    def _channel(self, name: str) -> paramiko.Channel:
        """A new session channel on `name`'s connection (connecting first if needed)."""
        conn = self._connect(name)
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(name, f"the connection to {self.addresses[name]} closed; "
                                 "the journal is resumable once the host is reachable again")
        channel: paramiko.Channel = transport.open_session(timeout=self.settings.connect_timeout)
        return channel

    def _exec(self, name: str, command: str, stdin: bytes | None,
              timeout: float | None) -> tuple[int, bytes, bytes]:
        return self._exec_on(self._channel(name), name, command, stdin, timeout)

    def _exec_on(self, channel: paramiko.Channel, name: str, command: str,
                 stdin: bytes | None, timeout: float | None) -> tuple[int, bytes, bytes]:
        """Run `command` on a new session `channel` of `name`'s connection: exit status,
        stdout, stderr."""
        channel.settimeout(timeout)
        channel.exec_command(command)
        errors: list[bytes] = []
        sender_error: list[BaseException] = []

        def send() -> None:
            try:
                if stdin:
                    channel.sendall(stdin)
                channel.shutdown_write()
            except (OSError, paramiko.SSHException) as exc:
                sender_error.append(exc)

        def read_stderr() -> None:
            stream = channel.makefile_stderr("rb")
            errors.append(stream.read())

        threads = [threading.Thread(target=read_stderr, daemon=True)]
        if stdin:
            threads.append(threading.Thread(target=send, daemon=True))
        else:
            send()
        for thread in threads:
            thread.start()
        out = channel.makefile("rb").read()
        for thread in threads:
            thread.join(timeout)
        status = channel.recv_exit_status()
        channel.close()
        if status == -1:
            raise TransportError(name, f"connection to {self.addresses[name]} lost before "
                                 "the command finished; the journal is resumable once the host "
                                 "is reachable again")
        return status, out, b"".join(errors)

    def _call(self, host: str, script: str, stdin: bytes | None,
              timeout: float | None) -> tuple[int, bytes, str]:
        """Run `script` as root (sudo when configured): exit status, stdout, stderr text.

        The host's lock covers connecting, the sudo check and opening the session channel;
        the command then runs on its own channel, so commands of one host may run at once
        (SSH multiplexes channels on the one connection)."""
        try:
            with self._locks[host]:
                password = self._sudo_password(host)
                channel = self._channel(host)
                self.round_trips_by_host[host] = self.round_trips_by_host.get(host, 0) + 1
            command = wrap(script, self.settings.sudo, password is not None)
            data = stdin
            if password is not None:
                data = password.encode() + b"\n" + (stdin or b"")
            status, out, err = self._exec_on(channel, host, command, data, timeout)
        except (TransportError, HostKeyError):
            self._drop(host)
            raise
        except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
            self._drop(host)
            raise TransportError(
                host, f"connection to {self.addresses[host]} lost while running a "
                f"command ({exc or type(exc).__name__}); the journal is resumable once the "
                "host is reachable again") from exc
        stderr = err.decode("utf-8", "replace")
        if status != 0 and password is not None and "incorrect password attempt" in stderr:
            raise TransportError(
                host, f"sudo refused the password for user {self.settings.user!r} (from "
                f"${self.settings.sudo_password_env} or the prompt). Set "
                f"{self.settings.sudo_password_env} to the user's sudo password")
        if status != 0 and self.settings.sudo and any(e in stderr for e in SUDO_ERRORS) \
                and "sudo:" in stderr:
            raise TransportError(
                host, f"user {self.settings.user!r} cannot use sudo without a password: "
                f"{stderr.strip()}. Grant it NOPASSWD sudo, or set ssh.sudo_password_env to "
                "an environment variable holding the password")
        return status, out, stderr

    def run(self, host: str, script: str, stdin: bytes | None = None,
            timeout: float | None = None) -> Result:
        """Run `script` on `host` as root (sudo when configured); one round trip. A script
        sent ahead to that host (`connect_ahead`) is not run again: its result is taken,
        once."""
        if stdin is None and self._sent_ahead:
            sent = self._sent_ahead.pop((host, script), None)
            if sent is not None:
                return sent.result()
        return self._run(host, script, stdin, timeout)

    def _run(self, host: str, script: str, stdin: bytes | None,
             timeout: float | None) -> Result:
        started = time.monotonic()
        status, out, stderr = self._call(host, script, stdin, timeout)
        return Result(host, script, status, out.decode("utf-8", "replace"), stderr,
                      time.monotonic() - started)

    def _sudo_password(self, host: str) -> str | None:
        """The sudo password to feed on stdin, or None when sudo needs none."""
        env = self.settings.sudo_password_env
        if not self.settings.sudo or not env:
            return None
        if host not in self._password_needed:
            status, _, _ = self._exec(host, "sudo -n true", None, self.settings.connect_timeout)
            self._password_needed[host] = status != 0
        if not self._password_needed[host]:
            return None
        password = sudo_password(env, self.settings.user)
        if not password:
            raise TransportError(
                host, f"user {self.settings.user!r} needs a password for sudo and ${env} "
                "(ssh.sudo_password_env) is not set; nothing was run there as root. Export "
                f"{env} holding the password, or run from a terminal to be asked for it")
        return password

    def read(self, host: str, script: str, timeout: float | None = None) -> bytes:
        """Raw stdout of `script` on `host` (binary safe, for tree copies)."""
        status, out, stderr = self._call(host, script, None, timeout)
        if status != 0:
            raise CommandFailed(Result(host, script, status, "", stderr))
        return out

    def keep(self, host: str, script: str) -> None:
        """Start `script` on its own channel of `host`'s connection and leave it running; it
        ends with the connection (a closed channel fails its next write)."""
        with self._locks[host]:
            try:
                password = self._sudo_password(host)
                channel = self._channel(host)
                channel.exec_command(wrap(script, self.settings.sudo, password is not None))
                if password is not None:
                    channel.sendall(password.encode() + b"\n")
                channel.shutdown_write()
            except (TimeoutError, OSError, EOFError, paramiko.SSHException) as exc:
                self._drop(host)
                raise TransportError(host, f"connection to {self.addresses[host]} lost while "
                                     f"starting the run's heartbeat ({exc})") from exc
            self._kept.append(channel)

    def stats(self) -> dict[str, Any]:
        """Per host: remote commands run (round trips) and SSH connections opened; and when
        the first connection attempt began (Unix time, for start-up measurements)."""
        first = self.first_connection
        return {"round_trips": dict(self.round_trips_by_host),
                "connections": dict(self.connections_opened),
                "first_connection": None if first is None else round(first, 3)}

    def _drop(self, host: str) -> None:
        """Forget a broken connection (the next command connects again)."""
        conn = self._connections.pop(host, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close every connection (and the channels kept on them), those still opening too."""
        for name, opening in list(self._opening.items()):
            with contextlib.suppress(Exception):
                self._connections.setdefault(name, opening.result())
        self._opening.clear()
        if self._dialer is not None:
            self._dialer.close()
        for channel in self._kept:
            channel.close()
        self._kept.clear()
        for conn in self._connections.values():
            conn.close()
        self._connections.clear()
