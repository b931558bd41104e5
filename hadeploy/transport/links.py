"""The SSH connection of one host: paramiko's client alone for a direct connection, fabric's
`Connection` only where an ssh_config or a gateway has to be understood.

paramiko's `config` module imports invoke (a task runner, ~50 ms of a run's start-up with
its own imports) only for ssh_config's `Match exec`, and fabric is built on invoke: a
direct connection, every run without `ssh.config` or `ssh.gateway`, needs neither. So
paramiko is imported here with invoke kept out (when nothing has loaded it yet), and fabric
and invoke load, and `Match exec` works again, only for a connection that needs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, Protocol


def _paramiko_without_invoke() -> None:
    """Import paramiko; unless invoke is loaded already, without paramiko.config importing it
    (a None in sys.modules makes that import fail, which paramiko.config expects)."""
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        return
    sys.modules["invoke"] = None  # type: ignore[assignment]
    try:
        import paramiko  # noqa: F401
    finally:
        del sys.modules["invoke"]


_paramiko_without_invoke()

import paramiko as paramiko  # noqa: E402  (the import above decides how it loads)


class Link(Protocol):
    """What the transport uses of a connection (fabric's `Connection` has it too)."""

    client: paramiko.SSHClient
    port: int

    @property
    def is_connected(self) -> bool:
        """Whether the connection is open."""

    def open(self) -> object:
        """Connect, authenticate and check the host key (the client's policy)."""

    def close(self) -> None:
        """Close the connection (and paramiko's thread)."""


class DirectLink:
    """A direct connection: what fabric's `Connection.open` does without ssh_config, gateway
    or agent forwarding, that is `SSHClient.connect` with the user, port and timeout."""

    def __init__(self, host: str, user: str, port: int, connect_kwargs: dict[str, Any],
                 connect_timeout: float) -> None:
        self.host = host
        self.user = user
        self.port = port
        self.connect_kwargs = connect_kwargs
        self.connect_timeout = connect_timeout
        self.client = paramiko.SSHClient()

    @property
    def is_connected(self) -> bool:
        transport = self.client.get_transport()
        return transport is not None and transport.is_active()

    def open(self) -> object:
        self.client.connect(hostname=self.host, port=self.port, username=self.user,
                            timeout=self.connect_timeout, **self.connect_kwargs)
        return None

    def close(self) -> None:
        self.client.close()


def fabric_link(host: str, user: str, port: int, connect_kwargs: dict[str, Any],
                connect_timeout: float, ssh_config: str | None, gateway: str | None,
                harden: Callable[[Link, str], None]) -> Link:
    """fabric's `Connection` to `host`, reading `ssh_config` (HostName, Port, User,
    IdentityFile, ProxyJump …) and going through `gateway` (a jump host, `harden`ed as the
    host is) when given."""
    import invoke
    from fabric import Config, Connection

    # paramiko.config was loaded without invoke (above): give it back for `Match exec`
    paramiko.config.invoke = invoke  # type: ignore[attr-defined]
    paramiko.config.invoke_import_error = None

    def config() -> Any:
        overrides = {"load_ssh_configs": bool(ssh_config)}
        if ssh_config:
            return Config(runtime_ssh_path=os.path.expanduser(ssh_config), overrides=overrides)
        return Config(overrides=overrides)

    via = None
    if gateway:
        via = Connection(gateway, config=config(), connect_kwargs=dict(connect_kwargs))
        harden(via, gateway)
    link: Link = Connection(host, user=user, port=port, config=config(), gateway=via,
                            connect_kwargs=connect_kwargs, connect_timeout=connect_timeout)
    return link
