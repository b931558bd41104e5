"""Swap the host in a URL or host:port value, keeping scheme, port and path."""

from __future__ import annotations

import re

URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<user>[^@/?#]*@)?"
                 r"(?P<host>\[[^\]]*\]|[^/:?#@]*)(?P<rest>(:[0-9]+)?([/?#].*)?)$", re.DOTALL)


def rehost(value: str, new_host: str) -> str:
    """`value` with its host replaced by `new_host` (http://a:5000/v3 -> http://VIP:5000/v3)."""
    match = URL.match(value.strip())
    if not match or not match.group("host"):
        return value
    lead = value[: len(value) - len(value.lstrip())]
    trail = value[len(value.rstrip()):]
    scheme = (match.group("scheme") or "") + (match.group("user") or "")
    return f"{lead}{scheme}{new_host}{match.group('rest')}{trail}"


def url_host(value: str) -> str | None:
    """The host part of a URL or host:port value, or None."""
    match = URL.match(value.strip())
    return match.group("host") if match and match.group("host") else None


def with_scheme(url: str, scheme: str) -> str:
    """`url` with its http:// or https:// scheme replaced by `scheme` (others unchanged)."""
    match = URL.match(url.strip())
    current = (match.group("scheme") or "").lower() if match else ""
    if current not in ("http://", "https://"):
        return url
    start = url.lower().index(current)
    return url[:start] + scheme + url[start + len(current):]
