"""Steps and runbooks: ordered values built from the inventory without touching a network.

A `Step` names the operations each of its hosts must satisfy. Whether an operation is done
is only known once its probe has run on the host, so the same step objects serve the plan
(`--dry-run` shows what is not done yet), the run, and the resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hadeploy.ops.base import AnyOp


@dataclass(frozen=True)
class Step:
    """One step of a guide: id, title, and the operations each host must satisfy.

    `serial` steps run one host at a time; with `last_probe` set, hosts whose probe prints
    `last` (e.g. the VIP holder) go after the others, so a restart never drops the VIP.
    With `starts_together`, a serial step's hosts where applying interrupts nothing (daemons
    only started: new controllers) go first, all at once; the others then one at a time.
    """

    id: str
    title: str
    ops: Mapping[str, tuple[AnyOp, ...]]
    serial: bool = False
    last_probe: str | None = None
    read_only: bool = False
    starts_together: bool = False

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts this step targets, in inventory order."""
        return tuple(self.ops)


@dataclass(frozen=True)
class Runbook:
    """The ordered steps of one phase (`lb` or `controllers`)."""

    phase: str
    steps: tuple[Step, ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        """Every host any step targets, in first-use order."""
        seen: dict[str, None] = {}
        for step in self.steps:
            for host in step.hosts:
                seen.setdefault(host)
        return tuple(seen)
