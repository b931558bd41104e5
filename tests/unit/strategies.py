"""Hypothesis strategies shared by the property tests: text that can reach a host."""

from __future__ import annotations

from typing import Literal

from hypothesis import strategies as st

# Lone surrogates (category Cs) cannot be encoded to UTF-8, so no file or argv can hold them.
SURROGATES: tuple[Literal["Cs"]] = ("Cs",)


def encodable_text(*, max_size: int, exclude: str = "", min_codepoint: int | None = None,
                   max_codepoint: int | None = None) -> st.SearchStrategy[str]:
    """Text of at most `max_size` characters that UTF-8 can encode, without the characters in
    `exclude` (and within the code points given)."""
    return st.text(st.characters(min_codepoint=min_codepoint, max_codepoint=max_codepoint,
                                 exclude_categories=SURROGATES, exclude_characters=exclude),
                   max_size=max_size)
