"""Editing one ini key (oslo.config, paste.deploy) leaves every other byte alone."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadeploy.render import get_ini_value, ini, set_ini_value
from tests.unit.strategies import encodable_text

API_PASTE = """\
############
# Metadata #
############
[composite:metadata]
use = egg:Paste#urlmap
/: meta

[pipeline:meta]
pipeline = ec2faultwrap logrequest metaapp

[filter:authtoken]
paste.filter_factory = keystoneclient.middleware.auth_token:filter_factory
auth_host = 10.15.85.141
auth_port = 35357
auth_protocol = http
# auth_host = 127.0.0.1   (the packstack default)
admin_tenant_name = services

"""

NOVA_CONF = """\
[DEFAULT]

#
# Options defined in nova.netconf
#

# ip address of this host (string value)
#my_ip=10.0.0.1
metadata_host=10.15.85.141
quantum_url = http://10.15.85.141:9696
glance_api_servers=10.15.85.141:9292

[keystone_authtoken]
auth_host = 10.15.85.141
auth_host_port = 1
"""


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


def test_get_reads_paste_filter_sections() -> None:
    assert get_ini_value(API_PASTE, "filter:authtoken", "auth_host") == "10.15.85.141"
    assert get_ini_value(API_PASTE, "filter:authtoken", "paste.filter_factory") == \
        "keystoneclient.middleware.auth_token:filter_factory"
    assert get_ini_value(API_PASTE, "composite:metadata", "use") == "egg:Paste#urlmap"
    assert get_ini_value(API_PASTE, "composite:metadata", "/") == "meta"  # key: value form
    assert get_ini_value(API_PASTE, "filter:authtoken", "missing") is None
    assert get_ini_value(API_PASTE, "no-such-section", "auth_host") is None


def test_set_in_place_changes_only_that_line() -> None:
    after = set_ini_value(API_PASTE, "filter:authtoken", "auth_host", "10.15.85.31")
    assert changed_lines(API_PASTE, after) == [
        ("auth_host = 10.15.85.141\n", "auth_host = 10.15.85.31\n")
    ]
    assert get_ini_value(after, "filter:authtoken", "auth_host") == "10.15.85.31"
    assert "# auth_host = 127.0.0.1   (the packstack default)\n" in after


def test_set_keeps_separator_and_indentation() -> None:
    text = "[DEFAULT]\n  auth_host=1.2.3.4\nbind_host:0.0.0.0\nmy_ip  =  1.1.1.1   \n"
    after = set_ini_value(text, "DEFAULT", "auth_host", "VIP")
    after = set_ini_value(after, "DEFAULT", "bind_host", "10.0.0.2")
    after = set_ini_value(after, "DEFAULT", "my_ip", "10.0.0.3")
    assert after == "[DEFAULT]\n  auth_host=VIP\nbind_host:10.0.0.2\nmy_ip  =  10.0.0.3\n"


def test_same_key_in_other_section_and_longer_keys_untouched() -> None:
    after = set_ini_value(NOVA_CONF, "keystone_authtoken", "auth_host", "10.15.85.31")
    assert changed_lines(NOVA_CONF, after) == [
        ("auth_host = 10.15.85.141\n", "auth_host = 10.15.85.31\n")
    ]
    assert get_ini_value(after, "keystone_authtoken", "auth_host_port") == "1"
    after = set_ini_value(NOVA_CONF, "DEFAULT", "glance_api_servers", "10.15.85.31:9292")
    assert changed_lines(NOVA_CONF, after) == [
        ("glance_api_servers=10.15.85.141:9292\n", "glance_api_servers=10.15.85.31:9292\n")
    ]


def test_missing_key_is_added_at_the_end_of_its_section() -> None:
    after = set_ini_value(NOVA_CONF, "DEFAULT", "my_ip", "10.15.85.142")
    assert after == NOVA_CONF.replace(
        "glance_api_servers=10.15.85.141:9292\n",
        "glance_api_servers=10.15.85.141:9292\nmy_ip = 10.15.85.142\n",
    )
    assert "#my_ip=10.0.0.1\n" in after  # the commented default stays a comment
    assert get_ini_value(after, "DEFAULT", "my_ip") == "10.15.85.142"


def test_missing_key_in_an_empty_section_goes_right_after_the_header() -> None:
    text = "[a]\n[b]\nx = 1\n"
    assert set_ini_value(text, "a", "k", "v") == "[a]\nk = v\n[b]\nx = 1\n"


def test_missing_section_is_appended() -> None:
    after = set_ini_value(NOVA_CONF, "database", "connection", "mysql://vip/nova")
    assert after == NOVA_CONF + "\n[database]\nconnection = mysql://vip/nova\n"
    assert set_ini_value("", "DEFAULT", "k", "v") == "[DEFAULT]\nk = v\n"
    assert set_ini_value("[a]\nx = 1", "b", "k", "v") == "[a]\nx = 1\n\n[b]\nk = v\n"


def test_crlf_files_stay_crlf() -> None:
    text = NOVA_CONF.replace("\n", "\r\n")
    after = set_ini_value(text, "DEFAULT", "metadata_host", "10.15.85.31")
    assert after == text.replace("metadata_host=10.15.85.141", "metadata_host=10.15.85.31")
    added = set_ini_value(text, "keystone_authtoken", "auth_port", "35357")
    assert added == text + "auth_port = 35357\r\n"
    appended = set_ini_value(text, "glance", "api_servers", "http://vip:9292")
    assert appended == text + "\r\n[glance]\r\napi_servers = http://vip:9292\r\n"
    assert get_ini_value(text, "DEFAULT", "metadata_host") == "10.15.85.141"


def test_duplicate_keys_all_set_last_one_read() -> None:
    text = "[DEFAULT]\nauth_host = a\n# between\nauth_host = b\n"
    assert get_ini_value(text, "DEFAULT", "auth_host") == "b"  # oslo.config: last one wins
    after = set_ini_value(text, "DEFAULT", "auth_host", "vip")
    assert after == "[DEFAULT]\nauth_host = vip\n# between\nauth_host = vip\n"


def test_duplicate_sections() -> None:
    text = "[DEFAULT]\na = 1\n[other]\nb = 2\n[DEFAULT]\nc = 3\n"
    assert set_ini_value(text, "DEFAULT", "a", "9") == text.replace("a = 1", "a = 9")
    assert set_ini_value(text, "DEFAULT", "d", "4") == text + "d = 4\n"


def test_no_trailing_newline() -> None:
    assert set_ini_value("[a]\nk = 1", "a", "k", "2") == "[a]\nk = 2"
    assert set_ini_value("[a]\nk = 1", "a", "j", "2") == "[a]\nk = 1\nj = 2\n"


def test_values_with_separators_and_hashes() -> None:
    text = "[database]\nconnection = mysql://nova:pw@10.15.85.141/nova?charset=utf8\n"
    assert get_ini_value(text, "database", "connection") == \
        "mysql://nova:pw@10.15.85.141/nova?charset=utf8"
    after = set_ini_value(text, "database", "connection", "mysql://nova:p#w@vip/nova")
    assert get_ini_value(after, "database", "connection") == "mysql://nova:p#w@vip/nova"


def test_unicode_line_separators_are_not_line_ends() -> None:
    """oslo.config splits lines at CR/LF only; a form feed or U+2028 is part of the line."""
    text = "[a]\nk = x\u2028y\n# note\x0cj = 1\nz = \x85\n"
    assert get_ini_value(text, "a", "k") == "x\u2028y"
    assert get_ini_value(text, "a", "j") is None
    assert set_ini_value(text, "a", "k", "v") == "[a]\nk = v\n# note\x0cj = 1\nz = \x85\n"
    assert set_ini_value(text, "a", "j", "2") == text + "j = 2\n"


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\r\n"])
def test_multiline_values_refused(value: str) -> None:
    with pytest.raises(ValueError, match="one line"):
        set_ini_value(NOVA_CONF, "DEFAULT", "my_ip", value)


# ---------------------------------------------------------------------------------------------
# Properties: random files built from known parts, so the test knows which lines are whose.
# ---------------------------------------------------------------------------------------------

SECTIONS = ["DEFAULT", "keystone_authtoken", "filter:authtoken", "composite:osapi", "nova"]
KEYS = ["auth_host", "auth_host_port", "auth_url", "my_ip", "bind_host", "/v2.0",
        "paste.filter_factory"]
SEPARATORS = ["=", " = ", "= ", " =", ": ", ":", "\t=\t", " =  "]
LINE_TEXT = encodable_text(exclude="\r\n", max_size=30)
VALUES = LINE_TEXT.filter(lambda v: v == v.strip())


@dataclass(frozen=True)
class Part:
    text: str                  # the line without its end
    section: str | None        # the section it is in (None for a header)
    key: str | None = None     # for key lines
    value: str | None = None


@st.composite
def ini_files(draw: st.DrawFn) -> tuple[list[Part], list[str]]:
    """Parts, and each line's end (the last may be "")."""
    parts: list[Part] = []
    section = draw(st.sampled_from(SECTIONS))
    parts.append(Part(f"[{section}]" + draw(st.sampled_from(["", " ", "\t"])), None))
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["key", "key", "key", "section", "comment", "blank"]))
        if kind == "section":
            section = draw(st.sampled_from(SECTIONS))
            parts.append(Part(f"[{section}]", None))
        elif kind == "key":
            key, value = draw(st.sampled_from(KEYS)), draw(VALUES)
            lead = draw(st.sampled_from(["", "", " ", "\t"]))
            parts.append(Part(f"{lead}{key}{draw(st.sampled_from(SEPARATORS))}{value}",
                              section, key, value))
        elif kind == "comment":
            mark = draw(st.sampled_from(["#", ";", "# ", "#auth_host = "]))
            parts.append(Part(mark + draw(LINE_TEXT), section))
        else:
            parts.append(Part(draw(st.sampled_from(["", " ", "\t "])), section))
    style = draw(st.sampled_from(["\n", "\r\n", "mixed"]))
    ends = [draw(st.sampled_from(["\n", "\r\n"])) if style == "mixed" else style for _ in parts]
    if draw(st.booleans()):
        ends[-1] = ""
    return parts, ends


def render(parts: list[Part], ends: list[str]) -> str:
    return "".join(p.text + e for p, e in zip(parts, ends, strict=True))


def line_list(text: str) -> list[str]:
    return re.findall(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+\Z", text)


@settings(max_examples=300, deadline=None)
@given(ini=ini_files(), section=st.sampled_from(SECTIONS), key=st.sampled_from(KEYS),
       new=VALUES)
def test_property_set_changes_only_the_target_lines(
        ini: tuple[list[Part], list[str]], section: str, key: str, new: str) -> None:
    parts, ends = ini
    text = render(parts, ends)
    targets = [i for i, p in enumerate(parts) if p.section == section and p.key == key]
    expected_old = parts[targets[-1]].value if targets else None
    assert get_ini_value(text, section, key) == expected_old

    after = set_ini_value(text, section, key, new)
    assert get_ini_value(after, section, key) == new
    assert set_ini_value(after, section, key, new) == after  # idempotent
    before_lines, after_lines = line_list(text), line_list(after)

    if targets:  # replaced in place: same lines except the targets, whose value is `new`
        assert len(after_lines) == len(before_lines)
        for i, (old, now) in enumerate(zip(before_lines, after_lines, strict=True)):
            if i in targets:
                assert now.endswith(new + ends[i])
                assert now.startswith(old[: old.index(parts[i].key or "") + len(key)])
            else:
                assert now == old, f"line {i} changed"
        return

    nl = "\r\n" if "\r\n" in text else "\n"
    in_section = [i for i, p in enumerate(parts)
                  if (p.section is None and p.text.strip().strip("[]") == section)
                  or (p.section == section and p.text.strip())]
    if not in_section:  # a new section at the end, after a blank line
        prefix = text if text.endswith(("\n", "\r")) else text + nl
        assert after == f"{prefix}{nl}[{section}]{nl}{key} = {new}{nl}"
        return
    anchor = in_section[-1]  # after the last non-blank line of the section
    assert len(after_lines) == len(before_lines) + 1
    assert after_lines[anchor + 1] == f"{key} = {new}{nl}"
    assert after_lines[: anchor] == before_lines[: anchor]
    assert after_lines[anchor].rstrip("\r\n") == before_lines[anchor].rstrip("\r\n")
    assert after_lines[anchor + 2 :] == before_lines[anchor + 1 :]


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=120), section=st.sampled_from(SECTIONS),
       key=st.sampled_from(KEYS), new=VALUES)
def test_property_arbitrary_text_never_loses_bytes(text: str, section: str, key: str,
                                                   new: str) -> None:
    """On any text at all: get after set returns the value; an existing key keeps the line
    count; an absent one is inserted whole, every original character kept in order."""
    had = get_ini_value(text, section, key) is not None
    after = set_ini_value(text, section, key, new)
    assert get_ini_value(after, section, key) == new
    if had:
        assert len(line_list(after)) == len(line_list(text))
        return

    def flat(t: str) -> str:
        return t.replace("\r", "").replace("\n", "")

    old, now = flat(text), flat(after)
    inserted = [f"{key} = {new}", f"[{section}]{key} = {new}"]
    assert any(now == old[:i] + x + old[i:] for x in inserted for i in range(len(old) + 1))


def test_one_text_is_parsed_once_for_all_the_keys_read_from_it() -> None:
    """A run reads many keys of one config (each edit of nova.conf probes its own key):
    the text is split into lines once, and an edited text, a new text, is parsed anew."""
    text = "[DEFAULT]\nmy_ip = 10.0.0.1\n[database]\nconnection = x\n" + "# note\n" * 5000
    ini._lines.cache_clear()
    assert get_ini_value(text, "DEFAULT", "my_ip") == "10.0.0.1"
    assert get_ini_value(text, "database", "connection") == "x"
    assert get_ini_value(text, "api", "auth_strategy") is None
    assert ini._lines.cache_info().misses == 1
    edited = set_ini_value(text, "DEFAULT", "my_ip", "198.18.0.12")
    assert get_ini_value(edited, "DEFAULT", "my_ip") == "198.18.0.12"
    assert get_ini_value(text, "DEFAULT", "my_ip") == "10.0.0.1"
    assert ini._lines.cache_info().misses == 2
