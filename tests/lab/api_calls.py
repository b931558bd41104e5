"""Authenticated calls to each OpenStack API at one address (a controller's own, or a VIP),
straight over HTTP (or HTTPS, through a TLS-terminating VIP) from the workstation: a Keystone
token, then one real request per API."""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(address: str, port: int, method: str, path: str, *, token: str | None = None,
            body: object | None = None, headers: dict[str, str] | None = None,
            tls: ssl.SSLContext | None = None) -> Reply:
    """One HTTP request (HTTPS with `tls`, the client's context); `body` is sent as JSON."""
    connection = (http.client.HTTPSConnection(address, port, timeout=60, context=tls)
                  if tls is not None else http.client.HTTPConnection(address, port, timeout=60))
    sent = dict(headers or {})
    if token:
        sent["X-Auth-Token"] = token
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent["Content-Type"] = "application/json"
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class Session:
    """A token of the admin user in project admin, issued by the Keystone at `address` (over
    HTTPS with `tls`, which every later call then uses too)."""

    address: str
    token: str
    project_id: str
    tls: ssl.SSLContext | None = None

    @classmethod
    def login(cls, address: str, password: str, tls: ssl.SSLContext | None = None) -> Session:
        auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"name": "Default"}, "password": password}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}
        reply = request(address, 5000, "POST", "/v3/auth/tokens", body=auth, tls=tls)
        assert reply.status == 201, (address, reply.status, reply.body[:300])
        return cls(address, reply.headers["x-subject-token"],
                   reply.json()["token"]["project"]["id"], tls)

    def call(self, port: int, method: str, path: str, body: object | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        """`method path` on this session's address, authenticated."""
        return request(self.address, port, method, path.format(project=self.project_id),
                       token=self.token, body=body, headers=headers, tls=self.tls)

    def every_api(self, tag: str) -> dict[str, int]:
        """One real call per API at this address (creating a network and a container named
        after `tag`); the status of each, by API. Lists are checked to hold what was made."""
        status: dict[str, int] = {}

        def check(name: str, reply: Reply, ok: tuple[int, ...] = (200,)) -> Reply:
            status[name] = reply.status
            assert reply.status in ok, (self.address, name, reply.status, reply.body[:300])
            return reply

        check("compute", self.call(8774, "GET", "/v2.1/servers"))
        check("metadata", self.call(8775, "GET", "/healthcheck"))
        check("placement", self.call(8778, "GET", "/resource_providers",
                                     headers={"OpenStack-API-Version": "placement 1.6"}))
        check("network create", self.call(9696, "POST", "/v2.0/networks",
                                          {"network": {"name": f"net-{tag}"}}), (201,))
        nets = check("network list", self.call(9696, "GET", "/v2.0/networks")).json()
        assert f"net-{tag}" in {n["name"] for n in nets["networks"]}, (self.address, nets)
        check("volume", self.call(8776, "GET", "/v3/{project}/volumes"))
        check("orchestration", self.call(8004, "GET", "/v1/{project}/stacks"))
        check("cloudformation", self.call(8000, "GET", "/healthcheck"))
        check("image", self.call(9292, "GET", "/v2/images"))
        check("container create", self.call(8080, "PUT", f"/v1/AUTH_{{project}}/c-{tag}"),
              (201, 202))
        listed = check("container list", self.call(8080, "GET",
                                                   "/v1/AUTH_{project}?format=json")).json()
        assert f"c-{tag}" in {c["name"] for c in listed}, (self.address, listed)
        check("novnc", request(self.address, 6080, "GET", "/vnc_lite.html", tls=self.tls))
        # Through a TLS-terminating VIP the dashboard is on HTTPS's port, 443.
        page = check("dashboard", request(self.address, 443 if self.tls else 80, "GET",
                                          "/horizon/auth/login/", tls=self.tls))
        assert b'name="username"' in page.body, (self.address, page.body[:300])
        return status
