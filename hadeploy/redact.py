"""Keep secrets out of everything hadeploy prints or stores.

Two nets: `Redactor` replaces every known secret value (from the environment variables the
inventory names, the admin credentials read from a host) wherever it appears; and
`mask_config_text` masks values of secret-looking keys and URL passwords in config text,
which catches secrets hadeploy never learned (database passwords in keystone.conf).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

# What a secret is replaced with everywhere (render.secrets hands it to the renderers too).
MASK = "********"

SECRET_KEY = re.compile(
    r"^(?P<lead>\s*(?:export\s+)?[A-Za-z0-9_.-]*(?:pass(?:word)?|passwd|secret|token|"
    r"credential|auth_pass|stats auth)[A-Za-z0-9_.-]*\s*(?:[=:]\s*|\s+))(?P<value>\S.*?)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
URL_PASSWORD = re.compile(r"(?P<lead>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)@")
STATS_AUTH = re.compile(r"(?P<lead>stats auth \S+?:)(?P<pw>\S+)")


def mask_config_text(text: str) -> str:
    """`text` with values of password/secret/token keys and URL passwords masked."""
    text = URL_PASSWORD.sub(lambda m: f"{m.group('lead')}{MASK}@", text)
    text = STATS_AUTH.sub(lambda m: f"{m.group('lead')}{MASK}", text)
    return SECRET_KEY.sub(lambda m: f"{m.group('lead')}{MASK}", text)


class Redactor:
    """Replaces known secret values in any text (longest first, so overlaps mask fully)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Learn more secret values (short ones are ignored: they would mask everything).

        A value's JSON-escaped form is masked too, so JSON text (the journal) can be masked
        as a whole after it is serialised.
        """
        for value in secrets:
            if not value or len(value) < 3:
                continue
            for form in (value, json.dumps(value)[1:-1]):
                if form not in self._secrets:
                    self._secrets.append(form)
        self._secrets.sort(key=len, reverse=True)

    def __call__(self, text: str) -> str:
        """`text` with every known secret masked."""
        for value in self._secrets:
            text = text.replace(value, MASK)
        return text
