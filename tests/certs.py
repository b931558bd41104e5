"""Test certificates made with `cryptography`: a CA and the certificates it signs, for the TLS
bad-input corpus (tests/data/bad_tls) and the lab's https proof. Never used by hadeploy."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DAY = datetime.timedelta(days=1)


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh P-256 key (fast to make, accepted by haproxy and every client)."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """`key` as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass(frozen=True)
class CertAuthority:
    """A self-signed CA that issues leaf certificates."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common: str = "hadeploy test CA") -> CertAuthority:
        key = new_key()
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - DAY).not_valid_after(now + 3650 * DAY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(key, cert)

    def pem(self) -> bytes:
        """The CA certificate (what clients pass as --os-cacert)."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, names: list[str], key: ec.EllipticCurvePrivateKey,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> x509.Certificate:
        """A server certificate for `names` (IP addresses or DNS names) and `key`."""
        now = datetime.datetime.now(datetime.UTC)
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        return (x509.CertificateBuilder().subject_name(_name(names[0]))
                .issuer_name(self.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before or now - DAY)
                .not_valid_after(not_after or now + 825 * DAY)
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))


def write_pair(directory: Path, stem: str, cert: x509.Certificate,
               key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    """`stem.crt` (PEM) and `stem.key` (PEM, mode 0600) in `directory`."""
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


CORPUS_NAMES = ["10.15.85.40", "cloud.example.com"]  # hosts.example.toml's public VIP in tests


def make_tls_corpus(directory: Path) -> None:
    """Write the PEM/DER files of tests/data/bad_tls (run once; the files are committed).

    Valid certificates last until 2099 so that the corpus does not rot; the expired one
    ended in 2021. Test keys only: they protect nothing.
    """
    ca = CertAuthority.create("hadeploy bad-input corpus CA")
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    end = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)
    good_key = new_key()
    good = ca.issue(CORPUS_NAMES, good_key, start, end)
    write_pair(directory, "good", good, good_key)
    (directory / "other.key").write_bytes(key_pem(new_key()))
    expired_key = new_key()
    write_pair(directory, "expired", ca.issue(
        CORPUS_NAMES, expired_key, datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC),
        datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)), expired_key)
    wrong_key = new_key()
    write_pair(directory, "wrong_name",
               ca.issue(["10.15.85.99", "other.example.com"], wrong_key, start, end), wrong_key)
    (directory / "good.der").write_bytes(good.public_bytes(serialization.Encoding.DER))
    (directory / "encrypted.key").write_bytes(good_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"corpus-passphrase")))
