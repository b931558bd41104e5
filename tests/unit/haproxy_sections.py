"""A haproxy.cfg split into its sections, so that two configurations can be compared section
by section (order of options, comments and whitespace aside)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class Section:
    """One haproxy section: `kind name` and its directive lines (comments dropped,
    whitespace runs collapsed)."""

    kind: str
    name: str
    lines: list[str] = field(default_factory=list)

    @property
    def binds(self) -> list[str]:
        """The addresses of its `bind` lines, in order."""
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("bind ")]

    @property
    def servers(self) -> list[str]:
        """Its `server` lines, in order."""
        return [line for line in self.lines if line.startswith("server ")]

    @property
    def options(self) -> list[str]:
        """Every line but binds and servers, sorted (order is irrelevant to haproxy here)."""
        return sorted(line for line in self.lines if not line.startswith(("bind ", "server ")))

    def value(self, keyword: str) -> str | None:
        """The rest of the one line that starts with `keyword`, or None without one."""
        found = [line[len(keyword) + 1 :] for line in self.lines if line.startswith(keyword + " ")]
        assert len(found) <= 1, f"{self.kind} {self.name}: {keyword} given {len(found)} times"
        return found[0] if found else None


HEADERS = ("global", "defaults", "frontend", "backend", "listen")


def parse_haproxy(text: str | list[str]) -> list[Section]:
    """The sections of a haproxy.cfg, in order."""
    lines = text.splitlines() if isinstance(text, str) else text
    sections: list[Section] = []
    for raw in lines:
        line = re.sub(r"[ \t]+", " ", raw.split("#", 1)[0] if "#" in raw else raw).strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word in HEADERS and not raw[:1].isspace():
            sections.append(Section(word, rest))
        else:
            assert sections, f"directive before any section: {raw!r}"
            sections[-1].lines.append(line)
    return sections


def by_name(sections: list[Section], kind: str) -> dict[str, Section]:
    """The sections of one kind by name (names must be unique)."""
    found = {s.name: s for s in sections if s.kind == kind}
    assert len(found) == sum(1 for s in sections if s.kind == kind), f"duplicate {kind} names"
    return found
