"""Shell rc files (`export OS_AUTH_URL=...`) and URL rehosting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hadeploy.render import get_shell_var, rehost, set_shell_var
from hadeploy.render.urls import url_host
from tests.unit.strategies import encodable_text

KEYSTONERC = """\
# keystonerc_admin written by packstack
export OS_USERNAME=admin
export OS_TENANT_NAME=admin
export OS_PASSWORD='s3cr$t pw'
export OS_AUTH_URL=http://10.15.85.141:35357/v2.0/
export OS_AUTH_URL_V3="http://10.15.85.141:5000/v3"
export PS1='[\\u@\\h \\W(keystone_admin)]\\$ '
"""
VIP_URL = "http://10.15.85.31:35357/v2.0/"


def source(text: str, name: str, tmp_path: Path) -> str:
    """What /bin/sh sees in `name` after sourcing `text`."""
    rc = tmp_path / "rc"
    rc.write_text(text)
    result = subprocess.run(["/bin/sh", "-c", f'. "$1" && printf "%s" "${name}"', "sh", str(rc)],
                            capture_output=True, text=True, check=True, timeout=30)
    return result.stdout


def test_get_unquotes() -> None:
    assert get_shell_var(KEYSTONERC, "OS_AUTH_URL") == "http://10.15.85.141:35357/v2.0/"
    assert get_shell_var(KEYSTONERC, "OS_AUTH_URL_V3") == "http://10.15.85.141:5000/v3"
    assert get_shell_var(KEYSTONERC, "OS_PASSWORD") == "s3cr$t pw"
    assert get_shell_var(KEYSTONERC, "OS_REGION_NAME") is None


def test_set_unquoted_stays_unquoted_and_nothing_else_changes() -> None:
    after = set_shell_var(KEYSTONERC, "OS_AUTH_URL", VIP_URL)
    assert after == KEYSTONERC.replace("export OS_AUTH_URL=http://10.15.85.141:35357/v2.0/\n",
                                       f"export OS_AUTH_URL={VIP_URL}\n")


@pytest.mark.parametrize(("line", "expected"), [
    ('export OS_AUTH_URL="http://10.15.85.141:35357/v2.0/"',
     f'export OS_AUTH_URL="{VIP_URL}"'),
    ("export OS_AUTH_URL='http://10.15.85.141:35357/v2.0/'",
     f"export OS_AUTH_URL='{VIP_URL}'"),
    ("OS_AUTH_URL=http://10.15.85.141:35357/v2.0/", f"OS_AUTH_URL={VIP_URL}"),  # guide 1's rc
    ("    export   OS_AUTH_URL=http://x/", f"    export   OS_AUTH_URL={VIP_URL}"),
])
def test_set_keeps_the_quoting_style(line: str, expected: str, tmp_path: Path) -> None:
    text = f"# rc\n{line}\nexport OS_USERNAME=admin\n"
    after = set_shell_var(text, "OS_AUTH_URL", VIP_URL)
    assert after == f"# rc\n{expected}\nexport OS_USERNAME=admin\n"
    assert get_shell_var(after, "OS_AUTH_URL") == VIP_URL
    assert source(after, "OS_AUTH_URL", tmp_path) == VIP_URL


def test_similar_names_untouched() -> None:
    after = set_shell_var(KEYSTONERC, "OS_AUTH_URL", VIP_URL)
    assert 'export OS_AUTH_URL_V3="http://10.15.85.141:5000/v3"\n' in after


def test_every_assignment_is_set_and_the_last_is_read() -> None:
    text = "OS_AUTH_URL=a\nexport OS_AUTH_URL=b\n"
    assert get_shell_var(text, "OS_AUTH_URL") == "b"
    assert set_shell_var(text, "OS_AUTH_URL", "c") == "OS_AUTH_URL=c\nexport OS_AUTH_URL=c\n"


def test_missing_variable_is_appended_exported(tmp_path: Path) -> None:
    assert set_shell_var("export A=1\n", "OS_AUTH_URL", VIP_URL) == \
        f"export A=1\nexport OS_AUTH_URL={VIP_URL}\n"
    assert set_shell_var("export A=1", "B", "2") == "export A=1\nexport B=2\n"
    assert set_shell_var("", "B", "2") == "export B=2\n"


def test_crlf_line_ends_kept() -> None:
    text = "export A=1\r\nexport OS_AUTH_URL=http://x/\r\n"
    assert set_shell_var(text, "OS_AUTH_URL", "http://y/") == \
        "export A=1\r\nexport OS_AUTH_URL=http://y/\r\n"


@pytest.mark.parametrize("value", ["has space", "it's", 'dq"', "$HOME", "`reboot`", "a\\b",
                                   "$(reboot)", "x;y", "*", "~root", "",
                                   "line\u2028sep", "nel\x85", "form\x0cfeed"])
@pytest.mark.parametrize("line", ["export V=old", "export V='old'", 'export V="old"', "V=old"])
def test_unsafe_values_arrive_unchanged(value: str, line: str, tmp_path: Path) -> None:
    after = set_shell_var(f"{line}\n", "V", value)
    assert get_shell_var(after, "V") == value
    assert source(after, "V", tmp_path) == value


@settings(max_examples=60, deadline=None)
@given(value=encodable_text(min_codepoint=32, max_codepoint=0x2FFF, exclude="\x7f",
                            max_size=30),
       style=st.sampled_from(["export V=old", "export V='old'", 'export V="old"', "V=old", ""]))
def test_property_any_value_arrives_unchanged_and_other_lines_kept(
        value: str, style: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    text = f"# head\nexport A='keep me'\n{style}\nexport Z=1\n" if style else "export A=1\n"
    after = set_shell_var(text, "V", value)
    assert get_shell_var(after, "V") == value
    assert source(after, "V", tmp_path_factory.mktemp("rc")) == value
    before_lines, after_lines = text.split("\n"), after.split("\n")
    kept = [line for line in before_lines if not line.lstrip().startswith(("V=", "export V="))]
    assert [line for line in after_lines
            if not line.lstrip().startswith(("V=", "export V="))] == kept


# ---------------------------------------------------------------------------------------------
# rehost: swap the host, keep scheme, user, port, path, query and surrounding blanks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("http://10.15.85.141:35357/v2.0", "http://10.15.85.31:35357/v2.0"),
    ("http://10.15.85.141:5000/v2.0/", "http://10.15.85.31:5000/v2.0/"),
    ("https://ctl1.example.com/identity/v3", "https://10.15.85.31/identity/v3"),
    ("http://ctl1:8774/v2/%(tenant_id)s", "http://10.15.85.31:8774/v2/%(tenant_id)s"),
    ("http://ctl1:9292?x=1#frag", "http://10.15.85.31:9292?x=1#frag"),
    ("10.15.85.141:9292", "10.15.85.31:9292"),
    ("10.15.85.141", "10.15.85.31"),
    ("http://[fe80::1]:5000/v3", "http://10.15.85.31:5000/v3"),
    ("rabbit://guest:pw@10.15.85.141:5672/", "rabbit://guest:pw@10.15.85.31:5672/"),
    ("  http://ctl1:5000/v3  ", "  http://10.15.85.31:5000/v3  "),
    ("", ""),
])
def test_rehost(value: str, expected: str) -> None:
    assert rehost(value, "10.15.85.31") == expected


def test_url_host() -> None:
    assert url_host("http://10.15.85.141:35357/v2.0") == "10.15.85.141"
    assert url_host("10.15.85.141:9292") == "10.15.85.141"
    assert url_host("") is None


HOSTS = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True)
PATHS = st.from_regex(r"(/[A-Za-z0-9._%()~-]{0,10}){0,4}", fullmatch=True)


@settings(max_examples=200, deadline=None)
@given(scheme=st.sampled_from(["", "http://", "https://", "amqp://"]), host=HOSTS,
       port=st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
       path=PATHS, query=st.sampled_from(["", "?a=b", "#x", "?a=b&c=d#e"]))
def test_property_rehost_keeps_everything_but_the_host(
        scheme: str, host: str, port: str, path: str, query: str) -> None:
    value = f"{scheme}{host}{port}{path}{query}"
    out = rehost(value, "192.0.2.7")
    assert out == f"{scheme}192.0.2.7{port}{path}{query}"
    assert url_host(out) == "192.0.2.7"
    assert rehost(out, host) == value
