"""Work on many hosts at once, each result mapped to its host (fabric's Group -> GroupResult)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
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


def in_background(work: Callable[[], T], name: str) -> Future[T]:
    """`work()` in a thread of its own, started now: its result, or what it raised, is the
    future's (raised where the caller waits for it)."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
