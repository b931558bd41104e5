"""The inventory's keys, their types, defaults and per-value checks, as data.

`check_table` walks one TOML table against a schema and returns every problem it finds, each
naming the key and how to fix it; it never stops at the first one, so the operator sees all
of them in one run.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any

PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
REMOTE_PATH = re.compile(r"/[A-Za-z0-9._/+-]{0,4095}")
LOCAL_PATH = re.compile(r"(~/|/|\./)?[A-Za-z0-9._/+-]{1,4095}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
HAPROXY_TIME = re.compile(r"[0-9]{1,10}(us|ms|s|m|h|d)?")
URI_PATH = re.compile(r"/[A-Za-z0-9._/~-]{0,255}")
GATEWAY = re.compile(r"([A-Za-z0-9._-]{1,64}@)?[A-Za-z0-9][A-Za-z0-9.-]{0,252}(:[0-9]{1,5})?")
MAX_TEXT = 255
SECRET_WORDS = ("password", "passwd", "secret", "token", "auth_pass")

Check = Callable[[Any], str | None]
REQUIRED: Any = object()


@dataclass(frozen=True)
class Key:
    """One inventory key: its TOML type, default (or REQUIRED) and an optional value check."""

    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    check: Check | None = None
    hint: str = ""


def kind_name(kind: type | tuple[type, ...]) -> str:
    """How a TOML type is called in messages."""
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number",
             list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    """isinstance, except that TOML booleans are not integers and integers are numbers."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def shown(value: Any, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, so a 10 kB value does not drown the message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def matches(pattern: re.Pattern[str], what: str) -> Check:
    """A check that the whole value matches `pattern`, described as `what`."""

    def check(value: Any) -> str | None:
        if isinstance(value, str) and pattern.fullmatch(value):
            return None
        return f"{shown(value)} is not {what}"

    return check


def env_name(value: Any) -> str | None:
    """A check that the value names an environment variable; never echoes the value, which
    may be the secret itself written where its variable's name belongs."""
    if isinstance(value, str) and ENV_NAME.fullmatch(value):
        return None
    return ("is not an environment variable name (A-Z, 0-9, _) such as "
            "HADEPLOY_STATS_PASSWORD; write the variable's name here and export the secret in "
            "that variable, never the secret itself")


HAPROXY_UNITS_MS = {"us": 0.001, "ms": 1, "": 1, "s": 1000, "m": 60_000, "h": 3_600_000,
                    "d": 86_400_000}
HAPROXY_MAX_MS = 2_147_483_647


def haproxy_millis(value: str) -> float:
    """A haproxy time (`10s`, `500ms`, `90m`…) in milliseconds (ValueError if it is none)."""
    match = HAPROXY_TIME.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a haproxy time")
    number = int(value[: match.start(1)] if match.group(1) else value)
    return number * HAPROXY_UNITS_MS[match.group(1) or ""]


def haproxy_time(value: Any) -> str | None:
    """A check that the value is a haproxy time haproxy accepts: > 0 and at most ~24.8 days."""
    if not isinstance(value, str) or HAPROXY_TIME.fullmatch(value) is None:
        return f"{shown(value)} is not a haproxy time such as 10s, 500ms or 90m"
    millis = haproxy_millis(value)
    if millis == 0 or millis > HAPROXY_MAX_MS:
        return (f"{value!r} is outside what haproxy accepts (more than 0, at most 24d, "
                "i.e. 2147483647 ms); use e.g. 10s, 500ms or 90m")
    return None


def float_range(low: float, high: float) -> Check:
    """A check that a number lies in (low, high] (and is not nan)."""

    def check(value: Any) -> str | None:
        if low < value <= high:
            return None
        return f"{value} must be more than {low:g} and at most {high:g}"

    return check


def one_of(*choices: str) -> Check:
    """A check that the value is one of `choices`."""

    def check(value: Any) -> str | None:
        if value in choices:
            return None
        return f"{value!r} is not one of {', '.join(choices)}"

    return check


def in_range(low: int, high: int) -> Check:
    """A check that an integer lies in [low, high]."""

    def check(value: Any) -> str | None:
        if low <= value <= high:
            return None
        return f"{value} is outside {low}..{high}"

    return check


def ipv4(value: Any) -> str | None:
    """A check that the value is a dotted IPv4 address."""
    try:
        IPv4Address(value)
    except (AddressValueError, ValueError):
        return f"{value!r} is not an IPv4 address such as 10.15.85.31"
    return None


def str_list(item_check: Check) -> Check:
    """A check that every element of a list is a string passing `item_check`."""

    def check(value: Any) -> str | None:
        for index, item in enumerate(value):
            if not isinstance(item, str):
                return f"element {index + 1} ({item!r}) is not a string"
            problem = item_check(item)
            if problem:
                return problem
        return None

    return check


NAME = matches(PLAIN_NAME, "a plain name (letters, digits, '.', '_', '-'; at most 63)")
PATH = matches(REMOTE_PATH, "an absolute path of plain characters (letters, digits, . _ / + -)")
LOCAL = matches(LOCAL_PATH, "a path of plain characters (letters, digits, . _ / + - and ~/)")
ENV = env_name
TIME = haproxy_time
PORT = in_range(1, 65535)


def check_table(
    table: Mapping[str, Any], schema: Mapping[str, Key], where: str
) -> tuple[dict[str, Any], list[str]]:
    """Check `table` against `schema`; return the values with defaults filled and the problems."""
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key in table:
        lowered = key.lower()
        if key not in schema and any(word in lowered for word in SECRET_WORDS):
            env_keys = sorted(k for k in schema if k.endswith("_env"))
            if f"{key}_env" in schema:
                fix = (f"remove it, set {key}_env = \"SOME_VARIABLE\" and export SOME_VARIABLE "
                       "before running")
            elif env_keys:
                fix = (f"remove it; to give a secret, set {' or '.join(env_keys)} = "
                       "\"SOME_VARIABLE\" and export SOME_VARIABLE before running")
            else:
                fix = "remove it; this table takes no secret"
            problems.append(f"{where}.{key}: secrets are never written in the inventory; {fix}")
            continue
        if key not in schema:
            problems.append(
                f"{where}.{key if len(key) <= 40 else key[:30] + '...'}: unknown key; known "
                f"keys here are {', '.join(sorted(schema))}"
            )
    for key, spec in schema.items():
        if key not in table:
            if spec.default is REQUIRED:
                hint = f" ({spec.hint})" if spec.hint else ""
                problems.append(f"{where}.{key}: missing; add it{hint}")
            else:
                values[key] = spec.default
            continue
        value = table[key]
        if not type_ok(value, spec.kind):
            problems.append(f"{where}.{key}: must be {kind_name(spec.kind)}, not {shown(value)}")
            continue
        if isinstance(value, str) and len(value) > MAX_TEXT and spec.check is not PATH:
            problems.append(f"{where}.{key}: {len(value)} characters is too long (at most 255)")
            continue
        problem = spec.check(value) if spec.check else None
        if problem:
            hint = f"; {spec.hint}" if spec.hint else ""
            problems.append(f"{where}.{key}: {problem}{hint}")
            continue
        values[key] = value
    return values, problems
