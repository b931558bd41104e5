"""Read the guides' code blocks and compare haproxy configurations section by section."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


def indented_block_after(markdown: str, marker: str) -> list[str]:
    """The 4-space indented code block that follows the paragraph containing `marker`,
    de-indented (blank lines inside the block kept)."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if marker in line)
    i = start + 1
    while i < len(lines) and not lines[i].startswith("    "):
        i += 1
    block: list[str] = []
    while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
        block.append(lines[i][4:])
        i += 1
    while block and not block[-1].strip():
        block.pop()
    return block


def heredoc(block: list[str], opener: str) -> list[str]:
    """The body of the `cat > FILE << EOF` here-document in `block` that starts with `opener`."""
    start = next(i for i, line in enumerate(block) if line.startswith(opener))
    end = next(i for i in range(start + 1, len(block)) if block[i].strip() == "EOF")
    return block[start + 1 : end]


@dataclass
class Section:
    """One haproxy section: `kind name` and its directive lines (comments dropped,
    whitespace runs collapsed)."""

    kind: str
    name: str
    lines: list[str] = field(default_factory=list)

    @property
    def binds(self) -> list[str]:
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("bind ")]

    @property
    def servers(self) -> list[str]:
        return [line for line in self.lines if line.startswith("server ")]

    @property
    def options(self) -> list[str]:
        """Every line but binds and servers, sorted (order is irrelevant to haproxy here)."""
        return sorted(line for line in self.lines if not line.startswith(("bind ", "server ")))

    def value(self, keyword: str) -> str | None:
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


def read_guide(directory: Path, name: str) -> str:
    return (directory / name).read_text(encoding="utf-8")
