"""Where renderers get secret values: an explicit mapping, never the file, never a global."""

from __future__ import annotations

from collections.abc import Mapping

from hadeploy.redact import MASK

__all__ = ["MASK", "secret"]


def secret(secrets: Mapping[str, str] | None, env_name: str) -> str:
    """The secret named by `env_name`, or the mask when it is not provided (plans, previews)."""
    if secrets is None:
        return MASK
    return secrets.get(env_name, MASK)
