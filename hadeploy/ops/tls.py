"""The public VIP's certificate and key on a balancer: one root-only PEM file haproxy reads.

A whole-file write like any other (atomic, validated, backed up for rollback), except that
its content is never read back from the host nor shown: done-ness compares checksums, and
the plan names the certificate (subject, names, expiry, fingerprint) instead of a diff,
since the file holds the private key.
"""

from __future__ import annotations

from dataclasses import dataclass

from hadeploy.facts.files import FileState
from hadeploy.ops.base import HostContext
from hadeploy.ops.files import FileContent

# openssl, where the host has it, reads the certificate and the key back from the temp file.
VALIDATE_BUNDLE = ("if command -v openssl >/dev/null 2>&1; then "
                   "openssl x509 -noout -in {tmp} >&2 && openssl pkey -noout -in {tmp} >&2; fi")


def describe_bundle(pem: bytes) -> str:
    """Which certificate a bundle holds, in one line; never anything of its key.

    cryptography loads here, when a plan shows a bundle: a run without `[tls]` never needs it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        cert = x509.load_pem_x509_certificates(pem)[0]
    except ValueError:
        return "a certificate and key (masked)"
    return (f"certificate {cert.subject.rfc4514_string()}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, sha256 "
            f"{cert.fingerprint(hashes.SHA256()).hex()[:16]}; private key not shown")


@dataclass(frozen=True)
class SecretFile(FileContent):
    """A `FileContent` whose content is a secret: never probed back, never diffed."""

    def needs_content(self, ctx: HostContext) -> bool:
        return False

    def preview(self, ctx: HostContext, state: FileState) -> str:
        content = self.content_for(ctx)
        if content is None:
            return ""
        change = "replace" if state.exists else "create"
        return f"  {change} {self.path}: {describe_bundle(content)}\n"
