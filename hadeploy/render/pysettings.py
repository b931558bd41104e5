"""Read and set a string constant in a Python settings file (Horizon's local_settings.py:
`OPENSTACK_HOST = "192.0.2.10"`), keeping every other byte.

Only top-level assignments of a plain string literal are touched; an assignment computed
from an expression (`OPENSTACK_HOST = os.environ[...]`) is left alone and reported as None,
since rewriting code is not what a configuration tool should do behind an operator's back.
"""

from __future__ import annotations

import ast
import re

ASSIGN = re.compile(r"^(?P<lead>(?P<name>[A-Za-z_][A-Za-z0-9_]*)[ \t]*=[ \t]*)"
                    r"(?P<value>(?P<q>['\"])[^'\"\\\n]*(?P=q))(?P<rest>[ \t]*(?:#[^\n]*)?)$",
                    re.MULTILINE)


def get_py_string(text: str, name: str) -> str | None:
    """The value of the last top-level `name = "literal"` of `text`, or None."""
    value: str | None = None
    for match in ASSIGN.finditer(text):
        if match.group("name") == name:
            value = ast.literal_eval(match.group("value"))
    return value


def set_py_string(text: str, name: str, value: str) -> str:
    """`text` with every top-level `name = "literal"` set to `value` (same quotes, comment
    kept); unchanged where `name` has no such assignment."""
    if any(c in value for c in "'\"\\\n"):
        raise ValueError(f"{value!r} cannot be written as a plain string literal")

    def replace(match: re.Match[str]) -> str:
        if match.group("name") != name:
            return match.group(0)
        quote = match.group("q")
        return f"{match.group('lead')}{quote}{value}{quote}{match.group('rest')}"

    return ASSIGN.sub(replace, text)
