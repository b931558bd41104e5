"""Transports: the only code that talks to hosts."""

from hadeploy.transport.base import Result, Transport

__all__ = ["Result", "Transport"]
