"""The SSH transport notices a dead peer (found by tests/lab/test_lb_failures.py), checked
without a lab.

- A host whose link goes down mid-command used to hang the run forever: the SSH transport
  now makes the kernel probe a silent connection and close it when nothing answers.
"""

from __future__ import annotations

import socket
import sys
from types import SimpleNamespace

import pytest

from hadeploy.transport.ssh import _detect_dead_peer, dead_peer_options


def _values(connect_timeout: float) -> dict[int, int]:
    return {option: value for _, option, value in dead_peer_options(connect_timeout)}


def test_dead_peer_options_follow_the_connect_timeout() -> None:
    values = _values(5.0)
    assert values[socket.SO_KEEPALIVE] == 1
    if sys.platform != "linux":
        pytest.skip("TCP_KEEPIDLE and TCP_USER_TIMEOUT are Linux names")
    # Probed after 5 s of silence, every 5 s; given up after three timeouts (15 s).
    assert values[socket.TCP_KEEPIDLE] == values[socket.TCP_KEEPINTVL] == 5
    assert values[socket.TCP_KEEPCNT] == 3
    assert values[socket.TCP_USER_TIMEOUT] == 15_000
    # The default ssh.connect_timeout: gone after 30 s; sub-second timeouts round up to 1 s.
    assert _values(10.0)[socket.TCP_USER_TIMEOUT] == 30_000
    assert _values(0.2)[socket.TCP_KEEPIDLE] == 1


def test_dead_peer_options_are_set_on_the_connection_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        transport = SimpleNamespace(sock=sock)
        conn = SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport))
        _detect_dead_peer(conn, 4.0)
        for level, option, value in dead_peer_options(4.0):
            assert sock.getsockopt(level, option) == value, option


def test_a_gateway_channel_is_left_alone() -> None:
    """Through a jump host the "socket" is a paramiko channel: nothing to set, no error."""
    transport = SimpleNamespace(sock=object())
    conn = SimpleNamespace(client=SimpleNamespace(get_transport=lambda: transport))
    _detect_dead_peer(conn, 4.0)
