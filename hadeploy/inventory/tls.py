"""The public VIP and its TLS certificate: the inventory's rules and the PEM files' checks.

The certificate and key are workstation files, checked (like `ssh.identity`) before anything
connects: readable, PEM, the key owner-only and the certificate's own, valid now, and naming
what clients connect to. haproxy would otherwise refuse them on a balancer half-way through a
run, or worse, serve a certificate no client accepts. The key's bytes go nowhere but the
bundle haproxy reads (`TlsBundle.pem`), which travels on a command's stdin only.
"""

from __future__ import annotations

import datetime
import os
import stat
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import TYPE_CHECKING

from hadeploy.errors import InventoryError
from hadeploy.inventory.model import Inventory, Tls

# cryptography is imported by the checks that use it: an inventory without [tls] (and every
# run's start-up) never loads it.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

# Where the balancers keep the certificate, its chain and key, in the one file haproxy's
# `crt` reads; root-only (haproxy loads it before it drops its privileges).
TLS_BUNDLE = "/etc/haproxy/tls/hadeploy-public-vip.pem"
# The bundle's place in the secrets mapping handed to renderers and operations (no
# environment variable can have this name).
BUNDLE_SECRET = "hadeploy:tls-bundle"  # noqa: S105 (a name, not a secret)


def public_vip_rules(inv: Inventory) -> list[str]:
    """Problems of the optional second (public) VIP and of TLS settings that span keys."""
    vip = inv.vip
    problems: list[str] = []
    if vip.public_address is None:
        for key in ("public_interface", "public_prefix"):
            if getattr(vip, key) is not None:
                problems.append(f"vip.{key}: only means something with vip.public_address; "
                                "add public_address or remove it")
    else:
        problems += _public_address(inv, vip.public_address)
    if inv.tls is not None:
        if vip.public_address is None:
            problems.append(
                "tls: TLS terminates on the public VIP, and vip.public_address is not set; "
                "add vip.public_address (a second VIP for the public endpoints): the services "
                "reach each other through vip.address in plain HTTP, which a TLS-only port "
                "would refuse")
        if inv.haproxy.mode != "http":
            problems.append(
                f"tls: haproxy.mode is {inv.haproxy.mode}; TLS termination (and the "
                "X-Forwarded-Proto header the APIs build https links from) needs "
                "haproxy.mode = \"http\"")
    return problems


def _public_address(inv: Inventory, public: IPv4Address) -> list[str]:
    vip = inv.vip
    problems: list[str] = []
    if public == vip.address:
        problems.append(f"vip.public_address: {public} is vip.address; give the public "
                        "endpoints their own address, or remove public_address")
    for node in inv.nodes:
        if node.address == public:
            problems.append(f"vip.public_address: {public} is the address of {node.name}; "
                            "the public VIP must be a free address")
    prefix = vip.public_prefix or vip.prefix
    network = IPv4Network(f"{public}/{prefix}", strict=False)
    if prefix < 31 and public in (network.network_address, network.broadcast_address):
        problems.append(f"vip.public_address: {public} is the network or broadcast address "
                        f"of {network}; pick a host address")
    # On its own interface the public VIP may live in its own subnet; on the nodes' interface
    # it must be in theirs, as vip.address must.
    if (vip.public_interface or vip.interface) == vip.interface:
        for node in inv.balancers:
            subnet = IPv4Network(f"{node.address}/{prefix}", strict=False)
            if public not in subnet:
                problems.append(
                    f"vip.public_address: {public} is outside {node.name}'s subnet {subnet} "
                    "on vip.interface; pick an address there, or give it its own "
                    "vip.public_interface")
    return problems


@dataclass(frozen=True)
class TlsBundle:
    """The checked certificate (with its chain) and key, and what plans may say about them."""

    pem: bytes
    key_lines: tuple[str, ...]
    subject: str
    names: tuple[str, ...]
    not_after: datetime.datetime
    fingerprint: str

    def describe(self) -> str:
        """One line for plans: which certificate, never the key."""
        return (f"certificate {self.subject} ({', '.join(self.names)}), valid until "
                f"{self.not_after:%Y-%m-%d %H:%M} UTC, sha256 {self.fingerprint[:16]}; "
                "private key not shown")


def _read(path: Path, key: str) -> tuple[bytes | None, str | None]:
    try:
        return path.read_bytes(), None
    except FileNotFoundError:
        return None, f"tls.{key}: {path} does not exist; fix the path in tls.{key}"
    except OSError as exc:
        return None, (f"tls.{key}: {path} cannot be read ({exc.strerror or exc}); fix its "
                      f"permissions or the path in tls.{key}")


def _names(cert: x509.Certificate) -> tuple[str, ...]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    dns = [f"DNS:{n}" for n in san.get_values_for_type(x509.DNSName)]
    ips = [f"IP:{a}" for a in san.get_values_for_type(x509.IPAddress)]
    return tuple(dns + ips)


def _covers(names: tuple[str, ...], wanted: str) -> bool:
    """Whether a certificate with subject alternative `names` is valid for `wanted` (RFC 6125:
    an IP address only by an IP entry, a wildcard only for one leftmost label)."""
    try:
        address = ip_address(wanted)
    except ValueError:
        host = wanted.lower().rstrip(".")
        for name in names:
            if not name.startswith("DNS:"):
                continue
            pattern = name[4:].lower().rstrip(".")
            if pattern == host:
                return True
            if pattern.startswith("*.") and "." in host and host.split(".", 1)[1] == pattern[2:]:
                return True
        return False
    return f"IP:{address}" in names


def _certificate(inv: Inventory, tls: Tls, path: Path,
                 problems: list[str]) -> tuple[bytes, x509.Certificate] | None:
    from cryptography import x509

    data, why = _read(path, "certificate")
    if data is None:
        problems.append(str(why))
        return None
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        problems.append(
            f"tls.certificate: {path} is not a PEM certificate (no readable -----BEGIN "
            "CERTIFICATE----- block); give the PEM form (openssl x509 -in CERT -out CERT.pem "
            "converts a DER one)")
        return None
    cert = chain[0]
    now = datetime.datetime.now(datetime.UTC)
    if cert.not_valid_after_utc <= now:
        problems.append(
            f"tls.certificate: {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; "
            "renew it (same names) and run deploy-lb again")
    elif cert.not_valid_before_utc > now:
        problems.append(
            f"tls.certificate: {path} is not valid before "
            f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; check the workstation's clock "
            "or wait")
    wanted = tls.name or str(inv.vip.public)
    names = _names(cert)
    if not _covers(names, wanted):
        key = "tls.name" if tls.name else "vip.public_address"
        problems.append(
            f"tls.certificate: {path} does not cover {wanted} ({key}), which clients connect "
            f"to; its names are {', '.join(names) or 'none (no subjectAltName)'}: issue it "
            f"with {'DNS' if tls.name else 'IP'}:{wanted} as a subject alternative name"
            + ("" if tls.name else ", or set tls.name to the DNS name it covers"))
    return data, cert


def _private_key(path: Path, problems: list[str]) -> tuple[bytes, PrivateKeyTypes] | None:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        mode = 0
    if mode & 0o077:
        problems.append(
            f"tls.key: {path} is readable by others than its owner (mode {mode:04o}); "
            f"chmod 600 {path}, and consider the key exposed if others could log in")
    data, why = _read(path, "key")
    if data is None:
        problems.append(str(why))
        return None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        problems.append(
            f"tls.key: {path} is encrypted; haproxy needs the key unencrypted (openssl pkey "
            f"-in {path} -out NEW.key, then chmod 600 NEW.key and point tls.key at it)")
        return None
    except (ValueError, UnsupportedAlgorithm):
        problems.append(
            f"tls.key: {path} is not a PEM private key (no readable -----BEGIN ... PRIVATE "
            "KEY----- block); point tls.key at the certificate's key in PEM form")
        return None
    return data, key


def private_key_lines(pem: str) -> tuple[str, ...]:
    """The base64 lines of the private key in PEM text, for the redactor to mask: should any
    part of the key ever reach output, it is masked line by line."""
    lines: list[str] = []
    inside = False
    for line in pem.splitlines():
        if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
            inside = True
        elif line.startswith("-----END"):
            inside = False
        elif inside and line.strip():
            lines.append(line.strip())
    return tuple(lines)


def _spki(public: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_tls_files(inv: Inventory) -> tuple[TlsBundle | None, list[str]]:
    """The checked bundle for `inv`'s [tls] (None without one), and every problem found."""
    tls = inv.tls
    if tls is None:
        return None, []
    problems: list[str] = []
    cert_path = Path(os.path.expanduser(tls.certificate))
    key_path = Path(os.path.expanduser(tls.key))
    cert = _certificate(inv, tls, cert_path, problems)
    key = _private_key(key_path, problems)
    if cert is None or key is None:
        return None, problems
    from cryptography.hazmat.primitives import hashes

    (cert_pem, certificate), (key_pem, private) = cert, key
    if _spki(private.public_key()) != _spki(certificate.public_key()):
        problems.append(
            f"tls.key: {key_path} is not the private key of the certificate in {cert_path} "
            "(tls.certificate); point tls.key at the key the certificate was issued for")
    if problems:
        return None, problems
    pem = cert_pem.rstrip(b"\n") + b"\n" + key_pem.rstrip(b"\n") + b"\n"
    return TlsBundle(
        pem=pem,
        key_lines=private_key_lines(pem.decode("ascii", "replace")),
        subject=certificate.subject.rfc4514_string(),
        names=_names(certificate),
        not_after=certificate.not_valid_after_utc,
        fingerprint=certificate.fingerprint(hashes.SHA256()).hex(),
    ), []


def load_tls_bundle(inv: Inventory) -> TlsBundle | None:
    """The checked bundle, or `InventoryError` naming each file, key and fix."""
    bundle, problems = check_tls_files(inv)
    if problems:
        raise InventoryError(inv.path, problems)
    return bundle
