"""TLS certificate expiry of local certificate files (PEM or DER).

The decoding helpers here are shared with the service probes
(``collector.probes``), which read the certificate a TLS endpoint presents.
"""

from __future__ import annotations

import base64
import binascii
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collector.model import Evidence, Sample, gauge
from collector.registry import Context, register
from collector.schema import Duration

CERT_EXPIRY = gauge(
    "opsagent_certificate_expiry_timestamp_seconds",
    "Unix time at which the certificate in a local file expires (notAfter).",
)
CERT_NOT_BEFORE = gauge(
    "opsagent_certificate_not_before_timestamp_seconds",
    "Unix time from which the certificate in a local file is valid (notBefore).",
)
CERT_READ_OK = gauge(
    "opsagent_certificate_read_success",
    "Whether the certificate file could be read and decoded (1) or not (0).",
)

_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a rule or a report needs to know of one certificate."""

    subject: str
    issuer: str
    not_before: float
    not_after: float


def split_pem(data: bytes) -> list[bytes]:
    """DER bytes of every certificate in a PEM bundle (or the one DER certificate given)."""
    if _PEM_BEGIN not in data:
        return [data] if data else []
    out: list[bytes] = []
    pos = 0
    while True:
        start = data.find(_PEM_BEGIN, pos)
        if start < 0:
            break
        end = data.find(_PEM_END, start)
        if end < 0:
            break
        out.append(_pem_body_to_der(data[start + len(_PEM_BEGIN) : end]))
        pos = end + len(_PEM_END)
    return out


def _pem_body_to_der(body: bytes) -> bytes:
    # base64 by hand rather than ssl.PEM_cert_to_DER_cert: ssl maps libcrypto (5 MB)
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error as e:
        raise ValueError(f"bad PEM certificate: {e}") from None


def decode_cert(der: bytes) -> CertInfo:
    """Subject, issuer and validity of a DER certificate; ValueError when it is not one.

    ``cryptography`` is a dependency of paramiko and is used when present;
    the standard library's private test decoder is the fallback.
    """
    try:
        from cryptography import x509
    except ImportError:  # pragma: no cover - cryptography ships with paramiko
        return _decode_with_ssl(der)
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as e:
        raise ValueError(f"not a certificate: {e}") from None
    return CertInfo(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
    )


def _decode_with_ssl(der: bytes) -> CertInfo:
    import os
    import ssl
    import tempfile

    fd, tmp = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(ssl.DER_cert_to_PEM_cert(der))
        try:
            d = ssl._ssl._test_decode_cert(tmp)  # type: ignore[attr-defined]
        except ssl.SSLError as e:
            raise ValueError(f"not a certificate: {e}") from None
    finally:
        os.unlink(tmp)

    def name(rdns: tuple[tuple[tuple[str, str], ...], ...]) -> str:
        return ",".join(f"{k}={v}" for rdn in reversed(rdns) for k, v in rdn)

    return CertInfo(
        subject=name(d.get("subject", ())),
        issuer=name(d.get("issuer", ())),
        not_before=float(ssl.cert_time_to_seconds(d["notBefore"])),
        not_after=float(ssl.cert_time_to_seconds(d["notAfter"])),
    )


def parse_certificates(data: bytes) -> list[CertInfo]:
    """Decode every certificate in a PEM bundle or DER file."""
    return [decode_cert(der) for der in split_pem(data)]


def read_certificates(path: Path) -> list[CertInfo]:
    """Read and decode a certificate file; OSError or ValueError on failure."""
    certs = parse_certificates(path.read_bytes())
    if not certs:
        raise ValueError("no certificate found")
    return certs


@dataclass(frozen=True)
class CertificatesConfig:
    """Local certificate files to watch (globs, resolved under the root path)."""

    enabled: bool | None = None
    interval: Duration | None = Duration(3600)
    timeout: Duration | None = None
    paths: tuple[str, ...] = ()

    def check(self) -> list[tuple[str, str]]:
        bad = [i for i, p in enumerate(self.paths) if not p.startswith("/")]
        return [(f"paths[{i}]", "must be an absolute path") for i in bad]


def under_root(root: Path, path: str) -> Path:
    """``path`` (absolute, as configured) inside the root path given to the collector."""
    return root / path.lstrip("/")


def shown_path(root: Path, found: Path) -> str:
    """The path as the user configured it: ``found`` without the root prefix."""
    if str(root) != "/" and found.is_relative_to(root):
        return "/" + str(found.relative_to(root))
    return str(found)


@register("certificates", config=CertificatesConfig, default=True)
class CertificatesCollector:
    """Expiry of TLS certificates in local files (PEM bundles or DER)."""

    name = "certificates"

    def __init__(self, config: CertificatesConfig):
        self.config = config

    def collect(self, ctx: Context) -> Iterator[Sample]:
        root = ctx.paths.root
        for pattern in self.config.paths:
            full = under_root(root, pattern)
            matches = sorted(glob.glob(str(full))) if glob.has_magic(pattern) else [str(full)]
            for found in matches:
                shown = shown_path(root, Path(found))
                try:
                    certs = read_certificates(Path(found))
                except (OSError, ValueError) as e:
                    why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                    yield CERT_READ_OK.sample(0, path=shown)
                    text = f"{shown}: cannot read certificate: {why}"
                    ctx.add_evidence(Evidence("certificate", text, {"path": shown}, ctx.now()))
                    continue
                yield CERT_READ_OK.sample(1, path=shown)
                for c in certs:
                    yield CERT_EXPIRY.sample(c.not_after, path=shown, subject=c.subject)
                    yield CERT_NOT_BEFORE.sample(c.not_before, path=shown, subject=c.subject)
