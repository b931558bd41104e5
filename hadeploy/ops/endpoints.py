"""Keystone catalog endpoints moved to the VIP, keeping scheme, port, path and region.

Runs on the original controller with the admin credentials file sourced there, so the
credentials never leave that host and never appear on a command line. Modern releases list
and move (in place, ids kept) every endpoint in one process with one token
(`hadeploy.ops.endpoints_program`); grizzly uses the keystone v2 CLI's endpoint-create then
endpoint-delete, as the guide does. Non-public endpoints move first and identity's public
endpoint last: clients (the CLIs, Glance validating tokens) reach Keystone through the
catalog's public identity URL, so that one must change only when everything else is done
(and the VIP must already serve, which the runbook's order guarantees). Only URLs on a port
the VIP serves (`ports`) move: a service that is not balanced keeps its endpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hadeploy import framing
from hadeploy.facts import Fact, Probe
from hadeploy.ops.base import Command, HostContext, Operation, Record
from hadeploy.ops.endpoints_program import list_command, parse_listing, set_command, set_ids
from hadeploy.quoting import q, sh
from hadeploy.render.urls import URL, rehost, url_host, with_scheme

# Grizzly's apply prints `@@hadeploy-endpoint OLD NEW` for every endpoint it recreated.
NEW = "hadeploy-endpoint"
NEW_MARK = framing.tag(NEW)
# The catalog's endpoints as the listing shows them: rows of the keystone v2 table, or the
# records of `openstack endpoint list -f json` (which the endpoint program prints too).
Endpoints = list[dict[str, Any]]
GRIZZLY_URLS = ("publicurl", "internalurl", "adminurl")
GRIZZLY_INTERFACE = {"publicurl": "public", "internalurl": "internal", "adminurl": "admin"}


def parse_keystone_table(text: str) -> list[dict[str, str]]:
    """Rows of the keystone v2 CLI's ASCII table (`keystone endpoint-list`)."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    if not rows:
        return []
    header = [cell.strip() for cell in rows[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in row.strip("|").split("|")), strict=False))
            for row in rows[1:]]


def url_port(value: str) -> int | None:
    """The port of a URL (explicit, else the scheme's default), or None."""
    match = URL.match(value.strip())
    if not match:
        return None
    rest = match.group("rest") or ""
    if rest.startswith(":"):
        digits = rest[1:].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        return int(digits) if digits.isdigit() else None
    scheme = (match.group("scheme") or "").lower()
    return {"http://": 80, "https://": 443}.get(scheme)


def _moves_last(endpoint: dict[str, Any]) -> tuple[int, int]:
    """Sort key: non-public first, identity's public endpoint very last."""
    public = endpoint.get("Interface") == "public"
    identity = endpoint.get("Service Type") == "identity"
    return (1 if public else 0, 1 if public and identity else 0)


def _source(rc: str) -> str:
    return f". {q(rc)} >/dev/null"


@dataclass(frozen=True)
class EndpointsOnVip(Operation[Endpoints]):
    """Every catalog endpoint that names the original controller names the VIP instead."""

    op_id: str
    rc: str
    release: str
    vip: str
    original: tuple[str, ...]
    ports: tuple[int, ...] = ()  # ports the VIP serves; empty: any
    # Public endpoints' host (a second VIP, or the certificate's name) and whether the VIP
    # terminates TLS there; empty: the public endpoints are on `vip` like the others.
    public_host: str = ""
    public_tls: bool = False
    # Other names of the VIPs (the public VIP's address): URLs on them are moved too, so a
    # re-run after the public VIP or TLS was added updates what an earlier run moved.
    vips: tuple[str, ...] = ()

    def _moves(self, url: str) -> bool:
        """Whether `url` names the original controller or a VIP on a port the VIP serves."""
        hosts = (*self.original, self.vip, *self.vips, self.public_host)
        if url_host(url) not in hosts:
            return False
        return not self.ports or url_port(url) in self.ports

    def _target(self, url: str, interface: str) -> str:
        """Where `url`, an endpoint of `interface`, belongs."""
        if not self._moves(url):
            return url
        if interface != "public" or not self.public_host:
            return rehost(url, self.vip)
        return with_scheme(rehost(url, self.public_host),
                           "https://" if self.public_tls else "http://")

    def fact(self, ctx: HostContext) -> Fact[Endpoints]:
        # Keystone's login hashes the password (~0.3 s of a lab host's core): the listing
        # runs beside the rest of its batch
        if self.release == "grizzly":
            return Fact(framing.beside(f"{_source(self.rc)} && keystone endpoint-list"),
                        self._endpoints)
        return Fact(framing.beside(list_command(self.rc)), self._endpoints)

    def _endpoints(self, probe: Probe) -> Endpoints:
        if self.release != "grizzly":
            return parse_listing(probe.stdout, probe.exited, self.rc)
        if probe.exited != 0:
            raise ValueError(f"cannot list endpoints with {self.rc} (exit {probe.exited})")
        return parse_keystone_table(probe.stdout)

    def _stale(self, seen: Endpoints) -> Endpoints:
        if self.release == "grizzly":
            return [e for e in seen if any(self._target(e.get(k, ""), GRIZZLY_INTERFACE[k])
                                           != e.get(k, "") for k in GRIZZLY_URLS)]
        stale = [e for e in seen
                 if self._target(e.get("URL", ""), e.get("Interface", "")) != e.get("URL", "")]
        return sorted(stale, key=_moves_last)

    def done(self, ctx: HostContext, seen: Endpoints) -> bool:
        return not self._stale(seen)

    def intent(self, ctx: HostContext, seen: Endpoints) -> Record:
        if self.release == "grizzly":
            old = [{"id": e["id"], "region": e.get("region", ""),
                    "service_id": e.get("service_id", ""),
                    **{k: e.get(k, "") for k in GRIZZLY_URLS}} for e in self._stale(seen)]
        else:
            old = [{"id": e["ID"], "interface": e.get("Interface", ""), "url": e["URL"]}
                   for e in self._stale(seen)]
        return {"kind": "endpoints", "release": self.release, "rc": self.rc, "old": old}

    def apply(self, ctx: HostContext, seen: Endpoints) -> list[Command]:
        stale = self._stale(seen)
        if self.release == "grizzly":
            return [self._grizzly_apply(seen, stale)]
        summary = (f"PATCH {len(stale)} endpoint URL(s) -> {self._hosts()} in one python3 "
                   f"process (credentials from {self.rc})")
        return [set_command(self.rc, [(e["ID"], self._target(e["URL"], e.get("Interface", "")))
                                      for e in stale], summary)]

    def _hosts(self) -> str:
        if not self.public_host:
            return self.vip
        scheme = "https://" if self.public_tls else ""
        return f"{self.vip} (public: {scheme}{self.public_host})"

    def _grizzly_apply(self, seen: Endpoints, stale: Endpoints) -> Command:
        lines = ["set -e", _source(self.rc)]
        # An endpoint that already has the new URLs (created by an interrupted earlier
        # attempt, or by hand) is used rather than duplicated.
        existing = {self._grizzly_key(e, e): e["id"] for e in seen
                    if e not in stale and e.get("id")}
        for e in stale:
            target = {k: self._target(e.get(k, ""), GRIZZLY_INTERFACE[k]) for k in GRIZZLY_URLS}
            have = existing.get(self._grizzly_key(e, target))
            if have:
                lines.append(f"new={q(have)}")
            else:
                urls: list[str] = []
                for key in GRIZZLY_URLS:
                    urls += [f"--{key}", target[key]]
                create = sh("keystone", "endpoint-create", "--region", e.get("region", ""),
                            "--service-id", e.get("service_id", ""), *urls)
                lines.append(f"new=$({create} | awk -F'|' '$2 ~ /^ *id *$/ "
                             "{gsub(/ /, \"\", $3); print $3}')")
            # `set -e` does not see a failure inside the pipeline: never delete the old
            # endpoint unless the new one exists.
            lines.append(f"[ -n \"$new\" ] || {{ echo {q(self._no_id(e['id']))} >&2; "
                         "exit 1; }")
            lines.append(f"echo {NEW_MARK} {q(e['id'])} \"$new\"")
            lines.append(sh("keystone", "endpoint-delete", e["id"]) + " >/dev/null")
        summary = (f"keystone endpoint-create/-delete for {len(stale)} endpoint(s) -> "
                   f"{self._hosts()} (credentials from {self.rc})")
        return Command("\n".join(lines), summary=summary)

    @staticmethod
    def _grizzly_key(e: dict[str, Any], urls: dict[str, Any]) -> tuple[str, ...]:
        return (e.get("region", ""), e.get("service_id", ""),
                *(urls.get(k, "") for k in GRIZZLY_URLS))

    @staticmethod
    def _no_id(old: str) -> str:
        return (f"keystone endpoint-create printed no id for the replacement of endpoint "
                f"{old}; {old} was kept")

    def outcome(self, ctx: HostContext, outputs: list[str]) -> Record:
        if self.release != "grizzly":
            # The journal's account of what this attempt moved, in order. The undo does not
            # rely on it: a connection lost mid-command leaves no outcome at all, so the undo
            # restores from `old`, skipping endpoints already on their old URL.
            moved = set_ids(outputs)
            return {"moved": moved} if moved else {}
        created = {}
        for words in framing.tagged_words(NEW, "\n".join(outputs)):
            if len(words) == 2:
                created[words[0]] = words[1]
        return {"created": created} if created else {}

    def preview(self, ctx: HostContext, seen: Endpoints) -> str:
        lines = []
        for e in self._stale(seen):
            if self.release == "grizzly":
                lines += [f"  {e['id']} {k}: {e.get(k, '')} -> "
                          f"{self._target(e.get(k, ''), GRIZZLY_INTERFACE[k])}"
                          for k in GRIZZLY_URLS]
            else:
                lines.append(f"  {e.get('Service Type', '?')} {e.get('Interface', '?')}: "
                             f"{e['URL']} -> {self._target(e['URL'], e.get('Interface', ''))}")
        return "\n".join(lines) + "\n" if lines else ""

    def title(self) -> str:
        return f"Keystone endpoints on the VIP {self._hosts()}"


def undo_endpoints(ctx: HostContext, record: Record) -> list[Command]:
    """Put the previous endpoint URLs back (grizzly: recreate the old, delete the new).

    Modern: every endpoint the intent journaled goes back to its old URL, newest move first,
    in one process that skips those already on it. That restores exactly what moved even
    when the connection was lost half-way (then only the intent is journaled), and works the
    same from journals written before the move was batched.
    """
    if record["release"] != "grizzly":
        old = record["old"]
        return [set_command(record["rc"], [(e["id"], e["url"]) for e in reversed(old)],
                            f"restore {len(old)} endpoint URL(s) from the journal in one "
                            "python3 process")]
    lines = ["set -e", _source(record["rc"])]
    created = record.get("created", {})
    for e in record["old"]:
        new_id = created.get(e["id"])
        if not new_id:
            continue
        urls: list[str] = []
        for key in GRIZZLY_URLS:
            urls += [f"--{key}", e[key]]
        lines.append(sh("keystone", "endpoint-create", "--region", e["region"],
                        "--service-id", e["service_id"], *urls) + " >/dev/null")
        lines.append(sh("keystone", "endpoint-delete", new_id) + " >/dev/null")
    return [Command("\n".join(lines),
                    summary=f"restore {len(record['old'])} endpoint URL(s) from the journal")]
