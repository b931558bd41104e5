"""How one host's part of a step ended, as a value (fabric's GroupResult maps host -> this).

The engine's step executor returns one `HostOutcome` per host instead of raising, so a step
can go on with its other hosts and the coordinator decides afterwards; a failed outcome keeps
the original exception, whose text is only rendered (and redacted) at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

OutcomeState = Literal["ok", "changed", "failed", "interrupted", "rolled-back"]


@dataclass(frozen=True)
class HostOutcome:
    """One host's result in a step: its final state and, unless it succeeded, the error."""

    host: str
    state: OutcomeState
    error: BaseException | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the host's part ended as it should (neither failed nor interrupted)."""
        return self.error is None

    @property
    def failed(self) -> bool:
        """Whether the host failed (an interruption is not a failure: the run is resumable)."""
        return self.state == "failed"
