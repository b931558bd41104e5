"""The lab's original controller: real Keystone and Glance from Debian 12, packstack-style.

Needs root and the OpenStack packages in the lab's offline repository (downloaded once into
the persistent cache by the session fixture). Marked `openstack`: skipped, with the reason,
when the packages cannot be had (no network and no cache) or HADEPLOY_LAB_OPENSTACK=0.

Run: python -m pytest tests/lab/test_openstack_lab.py -m lab
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator

import pytest

from hadeploy.render.ini import get_ini_value
from hadeploy.render.shellrc import get_shell_var
from lab import Lab
from lab.errors import LabError
from lab.openstack import (
    ADMIN_RC,
    OriginalController,
    host_pss_bytes,
    prepare_new_controller,
    provision_original,
)
from tests.lab.helpers import OPENSTACK_UNAVAILABLE, http_get

pytestmark = [pytest.mark.lab, pytest.mark.openstack]

ORIGINAL = "ctl1"
NEW = ("ctl2", "ctl3")


@pytest.fixture(scope="module")
def original(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OriginalController]:
    """ctl1 provisioned as the original controller; reset to a bare host afterwards."""
    try:
        prepare_new_controller(lab, ORIGINAL)
    except LabError as err:
        pytest.skip("; ".join(OPENSTACK_UNAVAILABLE) or str(err))
    lab.hosts[ORIGINAL].reset()
    try:
        made = provision_original(lab, ORIGINAL, tmp_path_factory.mktemp("openstack"))
        pss = host_pss_bytes(lab.hosts[ORIGINAL]) / 2**20
        print(f"\noriginal controller provisioned: {made.timings}, "
              f"total {sum(made.timings.values()):.1f} s, PSS {pss:.0f} MiB")
        yield made
    finally:
        lab.hosts[ORIGINAL].reset()


def _openstack(lab: Lab, host: str, args: str) -> str:
    """Run the openstack CLI on `host` with the admin rc file sourced; return stdout."""
    result = lab.hosts[host].exec(f". {ADMIN_RC} && openstack {args}", check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_secrets_stay_out_of_repr(original: OriginalController) -> None:
    text = repr(original)
    assert original.admin_password not in text
    assert original.db_url not in text and original.glance_db_url not in text
    assert len({original.admin_password, urllib.parse.urlsplit(original.db_url).password,
                urllib.parse.urlsplit(original.glance_db_url).password}) == 3


def test_admin_rc_is_packstack_style_and_a_token_can_be_issued(
        lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    assert host.exec(["stat", "-c", "%a %U", ADMIN_RC]).stdout.split() == ["600", "root"]
    rc = host.exec(["cat", ADMIN_RC]).stdout
    assert get_shell_var(rc, "OS_AUTH_URL") == f"http://{host.address}:5000/v3"
    assert get_shell_var(rc, "OS_USERNAME") == "admin"
    assert get_shell_var(rc, "OS_PASSWORD") == original.admin_password
    assert get_shell_var(rc, "OS_PROJECT_NAME") == "admin"
    assert get_shell_var(rc, "OS_IDENTITY_API_VERSION") == "3"
    assert get_shell_var(rc, "OS_REGION_NAME") == "RegionOne"
    token = _openstack(lab, ORIGINAL, "token issue -f value -c id").strip()
    assert len(token) > 20


def test_catalog_points_only_at_the_original(lab: Lab, original: OriginalController) -> None:
    endpoints = json.loads(_openstack(lab, ORIGINAL, "endpoint list -f json"))
    seen = {(e["Service Type"], e["Interface"]) for e in endpoints}
    assert seen == {(t, i) for t in ("identity", "image") for i in ("public", "internal", "admin")}
    for endpoint in endpoints:
        url = urllib.parse.urlsplit(endpoint["URL"])
        assert url.hostname == original.address, endpoint
        assert url.port == (5000 if endpoint["Service Type"] == "identity" else 9292), endpoint
        assert endpoint["Region"] == "RegionOne", endpoint


def test_glance_answers(lab: Lab, original: OriginalController) -> None:
    assert json.loads(_openstack(lab, ORIGINAL, "image list -f json")) == []


def test_configs_hold_the_keys_hadeploy_rewrites(lab: Lab, original: OriginalController) -> None:
    host = lab.hosts[ORIGINAL]
    identity = f"http://{original.address}:5000"
    glance = host.exec(["cat", "/etc/glance/glance-api.conf"]).stdout
    assert get_ini_value(glance, "DEFAULT", "bind_host") == original.address
    assert get_ini_value(glance, "keystone_authtoken", "www_authenticate_uri") == identity
    assert get_ini_value(glance, "keystone_authtoken", "auth_url") == identity
    assert get_ini_value(glance, "database", "connection") == original.glance_connection
    keystone = host.exec(["cat", "/etc/keystone/keystone.conf"]).stdout
    assert get_ini_value(keystone, "database", "connection") == original.keystone_connection
    assert "--http-socket 0.0.0.0:5000" in host.exec(["cat", "/etc/default/keystone"]).stdout
    # Keystone on every address (as documented), glance-api on the original's only.
    listening = host.exec(["ss", "-Hltn"]).stdout
    assert "0.0.0.0:5000 " in listening
    assert f"{original.address}:9292 " in listening and "0.0.0.0:9292 " not in listening
    # Owners are names whose numbers depend on the host: the packages made them here.
    owners = host.exec(["stat", "-c", "%U:%G", "/etc/keystone/fernet-keys",
                        "/etc/keystone/credential-keys"]).stdout.split()
    assert owners == ["keystone:keystone", "keystone:keystone"]
    # No service start is blocked any more (the install's policy-rc.d is gone).
    assert host.exec(["test", "-e", "/usr/sbin/policy-rc.d"], check=False).returncode == 1


def test_database_is_reachable_from_the_new_controllers(
        lab: Lab, original: OriginalController) -> None:
    for name in NEW:
        prepare_new_controller(lab, name)
        for url in (original.db_url, original.glance_db_url):
            parts = urllib.parse.urlsplit(url)
            database = parts.path.lstrip("/")
            result = lab.hosts[name].exec(
                ["sh", "-c", 'IFS= read -r PGPASSWORD; export PGPASSWORD; '
                 'psql -h "$1" -p "$2" -U "$3" -d "$4" -tAc "SELECT count(*) FROM '
                 'information_schema.tables WHERE table_schema = \'public\'"',
                 "psql", str(parts.hostname), str(parts.port or 5432), str(parts.username),
                 database],
                input=f"{parts.password}\n")
            assert int(result.stdout.strip()) > 5, (name, database)
            assert lab.hosts[name].exec(["pg_isready", "-h", str(parts.hostname)]).returncode == 0


def test_apis_answer_from_the_workstation(original: OriginalController) -> None:
    body = http_get(original.keystone_url, timeout=5)
    assert body is not None and json.loads(body)["version"]["id"].startswith("v3")
    # Glance lists its API versions with "300 Multiple Choices".
    connection = http.client.HTTPConnection(original.address, 9292, timeout=5)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        versions = json.loads(response.read())["versions"]
    finally:
        connection.close()
    assert response.status == 300 and any(v["status"] == "CURRENT" for v in versions)
