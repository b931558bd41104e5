"""Events the engine emits; the console draws them and the JSON log stores them.

Kinds: run-started, facts, step-started, step-skipped, host-started, host-ok, host-changed,
host-failed, host-rolled-back, command, step-finished, run-finished, run-failed.

Data worth knowing: step-started has `title` and `hosts`; host-ok/changed have `duration`;
host-failed has `error` and, when a command failed, `command`, `exited` and `stderr` (its
last lines); command has `command`, `exited` and `duration`; host-rolled-back (one per host
and step a rollback undid) has none. `Emitter` masks secrets in every string field.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Something that happened during a run; `data` holds kind-specific fields."""

    kind: str
    run_id: str
    step: str | None = None
    host: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        """The event as a JSON object (one line of the event log)."""
        return {"event": self.kind, "run_id": self.run_id, "step": self.step,
                "host": self.host, "time": round(self.time, 3), **self.data}


Listener = Callable[[Event], None]


class Emitter:
    """The one place the engine's events leave for the listener: each gets the current run
    id, and secrets are masked in every string field on the way out."""

    def __init__(self, listener: Listener, redact: Callable[[str], str]) -> None:
        self.listener = listener
        self.redact = redact
        self.run_id = ""

    def __call__(self, event: str, step: str | None = None, host: str | None = None,
                 **data: Any) -> None:
        """Send an `event` of that kind about `step` and `host` with its kind's `data`."""
        clean = {k: self.redact(v) if isinstance(v, str) else v for k, v in data.items()}
        self.listener(Event(event, self.run_id, step, host, clean))
