"""Horizon's local_settings.py: string constants read and set, every other byte kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hadeploy.render.pysettings import get_py_string, set_py_string

SETTINGS = '''import os
# OPENSTACK_HOST = "commented"
OPENSTACK_HOST = "198.51.100.7"  # the controller
OPENSTACK_KEYSTONE_URL = "http://%s:5000/v3" % OPENSTACK_HOST
def f():
    OPENSTACK_HOST = "inner"
TIME_ZONE = 'UTC'
'''


def test_the_top_level_literal_is_read_and_set_in_place() -> None:
    assert get_py_string(SETTINGS, "OPENSTACK_HOST") == "198.51.100.7"
    assert get_py_string(SETTINGS, "TIME_ZONE") == "UTC"
    assert get_py_string(SETTINGS, "OPENSTACK_KEYSTONE_URL") is None  # an expression
    edited = set_py_string(SETTINGS, "OPENSTACK_HOST", "198.51.100.100")
    assert edited == SETTINGS.replace('OPENSTACK_HOST = "198.51.100.7"',
                                      'OPENSTACK_HOST = "198.51.100.100"')
    assert set_py_string(SETTINGS, "TIME_ZONE", "Europe/Paris").endswith(
        "TIME_ZONE = 'Europe/Paris'\n")
    assert set_py_string(SETTINGS, "MISSING", "x") == SETTINGS


def test_a_value_that_is_no_plain_literal_is_refused() -> None:
    with pytest.raises(ValueError, match="plain string literal"):
        set_py_string(SETTINGS, "OPENSTACK_HOST", 'a"b')


@given(st.from_regex(r"[A-Za-z0-9.:_/-]{0,30}", fullmatch=True))
def test_set_then_get_gives_the_value_back(value: str) -> None:
    edited = set_py_string(SETTINGS, "OPENSTACK_HOST", value)
    assert get_py_string(edited, "OPENSTACK_HOST") == value
    assert edited.count("\n") == SETTINGS.count("\n")
