"""Work on many hosts at once, each result mapped to its host (fabric's Group -> GroupResult)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def on_hosts(hosts: Sequence[str], work: Callable[[str], T], limit: int) -> dict[str, T]:
    """`work(host)` for every host, in at most `limit` threads, mapped by host in `hosts` order.

    Failures are meant to be returned as values: an exception `work` raises is a bug, and
    propagates once every host has finished. One host, or a limit of one, needs no thread.
    """
    if len(hosts) <= 1 or limit <= 1:
        return {host: work(host) for host in hosts}
    with ThreadPoolExecutor(max_workers=min(limit, len(hosts))) as pool:
        futures = {host: pool.submit(work, host) for host in hosts}
        return {host: future.result() for host, future in futures.items()}
