"""The lab's own error: a `HadeployError`, so the edges that run the lab show it the same way."""

from __future__ import annotations

from hadeploy.errors import HadeployError


class LabError(HadeployError):
    """The lab of simulated hosts could not be built, used or removed."""
