"""Local certificate files made by the real openssl CLI: PEM bundles, DER, garbage, missing."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from collector.certificates import (
    CertificatesCollector,
    CertificatesConfig,
    _decode_with_ssl,
    parse_certificates,
    split_pem,
)
from collector.model import Sample
from collector.registry import Context, Paths

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def openssl_cert(path: Path, cn: str, days: int) -> None:
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(path.with_suffix(".key")), "-out", str(path), "-days", str(days),
         "-subj", f"/CN={cn}"],
        check=True, capture_output=True, timeout=60,
    )


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for s in samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def test_expiry_of_pem_bundle_der_and_unreadable_files(tmp_path: Path) -> None:
    certs = tmp_path / "etc" / "ssl"
    certs.mkdir(parents=True)
    openssl_cert(certs / "web.pem", "web.example", 20)
    openssl_cert(certs / "api.pem", "api.example", 400)
    bundle = certs / "bundle.crt"
    bundle.write_bytes((certs / "web.pem").read_bytes() + (certs / "api.pem").read_bytes())
    der = certs / "web.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert((certs / "web.pem").read_text()))
    (certs / "garbage.crt").write_text("not a certificate\n")

    config = CertificatesConfig(paths=("/etc/ssl/*.crt", "/etc/ssl/web.der", "/etc/ssl/missing.pem"))
    ctx = Context(config=None, paths=Paths(root=tmp_path))
    samples = list(CertificatesCollector(config).collect(ctx))

    now = time.time()
    web = value(samples, "opsagent_certificate_expiry_timestamp_seconds", path="/etc/ssl/bundle.crt",
                subject="CN=web.example")
    api = value(samples, "opsagent_certificate_expiry_timestamp_seconds", path="/etc/ssl/bundle.crt",
                subject="CN=api.example")
    assert web is not None and abs(web - (now + 20 * 86400)) < 120
    assert api is not None and abs(api - (now + 400 * 86400)) < 120
    assert value(samples, "opsagent_certificate_expiry_timestamp_seconds", path="/etc/ssl/web.der") == web
    assert value(samples, "opsagent_certificate_read_success", path="/etc/ssl/garbage.crt") == 0
    assert value(samples, "opsagent_certificate_read_success", path="/etc/ssl/missing.pem") == 0
    assert value(samples, "opsagent_certificate_read_success", path="/etc/ssl/bundle.crt") == 1
    texts = " ".join(e.text for e in ctx.evidence)
    assert "garbage.crt" in texts and "missing.pem" in texts


def test_standard_library_fallback_decodes_the_same(tmp_path: Path) -> None:
    openssl_cert(tmp_path / "c.pem", "fallback.example", 10)
    (der,) = split_pem((tmp_path / "c.pem").read_bytes())
    (info,) = parse_certificates(der)
    fallback = _decode_with_ssl(der)
    assert fallback.not_after == info.not_after
    assert "fallback.example" in fallback.subject and info.subject == "CN=fallback.example"


def test_default_rules_expiring_local_certificates_are_p2_within_7_days_p3_within_30(tmp_path: Path) -> None:
    from rule_harness import firing

    certs = tmp_path / "etc" / "ssl"
    certs.mkdir(parents=True)
    for cn, days in (("soon", 5), ("month", 20), ("year", 400)):
        openssl_cert(certs / f"{cn}.pem", f"{cn}.example", days)
    (certs / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64\n")
    ctx = Context(config=None, paths=Paths(root=tmp_path))
    samples = list(CertificatesCollector(CertificatesConfig(paths=("/etc/ssl/*.pem",))).collect(ctx))
    alerts = firing("probes.yml", [samples], time.time(), step=300.0)  # 3 rounds: 10 min
    levels = {a.labels["path"]: a.level for a in alerts["LocalCertificateExpiring"]}
    assert levels == {"/etc/ssl/soon.pem": "P2", "/etc/ssl/month.pem": "P3"}
    assert [a.labels["path"] for a in alerts["LocalCertificateUnreadable"]] == ["/etc/ssl/broken.pem"]
