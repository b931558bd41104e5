"""The guides' code blocks as the tests read them: an indented block after a paragraph, and a
here-document inside it."""

from __future__ import annotations

from pathlib import Path


def read_guide(directory: Path, name: str) -> str:
    """The text of guide `name` in `directory`."""
    return (directory / name).read_text(encoding="utf-8")


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
