"""RESULTS.md is made of `## ` sections that different bench modes write: each replaces its
own section and leaves the others as they are."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, heading: str, section: str) -> None:
    """Put `section` (which starts with `heading`) into `path` in place of its earlier
    version, or at the end."""
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text)
