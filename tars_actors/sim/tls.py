"""Throwaway TLS certificates for stand-ins on 127.0.0.1, generated at run time, never stored.

A private CA signs a leaf certificate for ``127.0.0.1`` and ``localhost``. Servers load the
leaf (:meth:`LocalCertificate.server_context`); clients trust the CA file
(``[gemini] ca_file``, or :meth:`LocalCertificate.client_context`). Uses ``cryptography``
(installed with google-auth) and falls back to the ``openssl`` command line tool.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
except ImportError:  # the openssl command line tool is the fallback
    HAVE_CRYPTOGRAPHY = False
else:
    HAVE_CRYPTOGRAPHY = True

__all__ = ["HAVE_CRYPTOGRAPHY", "LocalCertificate", "create_local_certificate"]

_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalCertificate:
    """Paths of a generated certificate: the CA clients trust and the server's leaf + key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def create_local_certificate(
    directory: Path,
    *,
    days: int = 2,
    backend: Literal["auto", "cryptography", "openssl"] = "auto",
) -> LocalCertificate:
    """Write a fresh CA and a leaf for 127.0.0.1/localhost into ``directory`` (created if needed).

    ``backend="auto"`` uses ``cryptography`` when installed, else the ``openssl`` tool.
    """
    directory.mkdir(parents=True, exist_ok=True)
    certificate = LocalCertificate(
        ca_file=directory / "ca.pem",
        cert_file=directory / "cert.pem",
        key_file=directory / "key.pem",
    )
    if backend == "openssl" or (backend == "auto" and not HAVE_CRYPTOGRAPHY):
        _write_with_openssl(certificate, days=days)
    elif HAVE_CRYPTOGRAPHY:
        _write_with_cryptography(certificate, days=days)
    else:
        raise RuntimeError("the 'cryptography' package is not installed")
    return certificate


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _write_with_cryptography(certificate: LocalCertificate, *, days: int) -> None:
    now = datetime.now(UTC)
    not_before = now - timedelta(minutes=5)
    not_after = now + timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "TARS stand-in test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _HOSTS[0])]))
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(_HOSTS[0])), x509.DNSName(_HOSTS[1])]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    pem = serialization.Encoding.PEM
    certificate.ca_file.write_bytes(ca_cert.public_bytes(pem))
    certificate.cert_file.write_bytes(leaf_cert.public_bytes(pem))
    _write_private(
        certificate.key_file,
        leaf_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _write_with_openssl(certificate: LocalCertificate, *, days: int) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError(
            "creating a test certificate needs the 'cryptography' package or the openssl tool"
        )
    directory = certificate.cert_file.parent
    ca_key = directory / "ca-key.pem"
    request = directory / "leaf.csr"
    extensions = directory / "leaf.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        f"subjectAltName=IP:{_HOSTS[0]},DNS:{_HOSTS[1]}\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid\n"
    )
    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    commands = [
        [openssl, "req", "-x509", *ec_key, "-keyout", str(ca_key), "-out", str(certificate.ca_file),
         "-days", str(days), "-subj", "/CN=TARS stand-in test CA",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"],
        [openssl, "req", "-new", *ec_key, "-keyout", str(certificate.key_file),
         "-out", str(request), "-subj", f"/CN={_HOSTS[0]}"],
        [openssl, "x509", "-req", "-in", str(request), "-CA", str(certificate.ca_file),
         "-CAkey", str(ca_key), "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
         "-days", str(days), "-extfile", str(extensions), "-out", str(certificate.cert_file)],
    ]  # fmt: skip
    try:
        for command in commands:
            # The arguments are built here from fixed strings and our own paths.
            subprocess.run(command, check=True, capture_output=True)  # noqa: S603
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"openssl failed creating a test certificate: {error.stderr.decode(errors='replace')}"
        ) from error
    finally:
        # Only the leaf key is needed afterwards; the CA key would let anyone mint certificates
        # this run's clients trust.
        for leftover in (ca_key, request, extensions):
            leftover.unlink(missing_ok=True)
    certificate.key_file.chmod(0o600)
