"""TLS for the server: checks of a certificate and key, a self-signed certificate kept in the home, the
loopback rule, and the CA a job's supervisors verify the server with.

A server serves https when ``tls_cert`` and ``tls_key`` are set (``--tls-cert``/``--tls-key``, or
``TRAINFORGE_TLS_CERT``/``TRAINFORGE_TLS_KEY``). ``--tls self-signed`` makes (once, then reuses) a CA-style
self-signed certificate in ``<home>/tls/`` and serves it. A server bound to anything but loopback refuses to
start without TLS unless ``insecure`` is set. Every refusal is a :class:`~trainforge.errors.ValidationError`
whose message is one line naming the flag and the fix.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from trainforge.errors import ValidationError
from trainforge.settings import Settings

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)

SELF_SIGNED = "self-signed"
"""The value of ``--tls`` that makes the server serve a self-signed certificate of its own."""
TLS_DIR = "tls"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 825
"""How long a generated certificate is valid."""
RENEW_DAYS = 30
"""A generated certificate this close to its end is made anew at the next start."""

CERT_FLAG = "--tls-cert (TRAINFORGE_TLS_CERT)"
KEY_FLAG = "--tls-key (TRAINFORGE_TLS_KEY)"
CA_FLAG = "TRAINFORGE_CA_BUNDLE"
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})


@dataclass(frozen=True)
class CertificateFiles:
    """A certificate and its key as the server serves them.

    Attributes:
        cert: The certificate (PEM), absolute.
        key: Its private key (PEM), absolute.
        self_signed: Whether it is the home's own generated certificate (``--tls self-signed``).
        generated: Whether this call wrote it (False: an existing one is reused).
    """

    cert: Path
    key: Path
    self_signed: bool = False
    generated: bool = False


def self_signed_paths(home: Path) -> tuple[Path, Path]:
    """``(<home>/tls/cert.pem, <home>/tls/key.pem)``: where ``--tls self-signed`` keeps its certificate."""
    directory = home.expanduser().resolve() / TLS_DIR
    return directory / CERT_FILE, directory / KEY_FILE


def is_self_signed(settings: Settings) -> bool:
    """Whether the certificate ``settings`` serve is the home's generated one."""
    if settings.tls_cert is None:
        return False
    return settings.tls_cert.expanduser().resolve() == self_signed_paths(settings.resolved_home)[0]


def is_wildcard(host: str) -> bool:
    """Whether binding ``host`` listens on every interface (``0.0.0.0``, ``::``)."""
    return host.strip().strip("[]") in _WILDCARDS


def loopback_url_host(host: str) -> str:
    """The host part of a URL that reaches a server bound to ``host`` from this machine: the loopback address
    for a wildcard bind (``0.0.0.0`` -> ``127.0.0.1``, ``::`` -> ``[::1]``), else ``host`` (IPv6 bracketed)."""
    bare = host.strip().strip("[]")
    if is_wildcard(bare):
        return "[::1]" if ":" in bare else "127.0.0.1"
    return f"[{bare}]" if ":" in bare else bare


def exposes_network(host: str) -> bool:
    """Whether a server bound to ``host`` can be reached from other machines.

    True for a wildcard and for a name or address that resolves to any non-loopback address. A host that does not
    resolve is not judged here (binding it fails with its own error).
    """
    bare = host.strip().strip("[]")
    if is_wildcard(bare):
        return True
    if bare.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(bare.split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return any(not ipaddress.ip_address(a).is_loopback for a in addresses)


def check_bind(settings: Settings) -> None:
    """Refuse a server reachable from the network that would speak plain http, unless ``insecure`` is set.

    Raises:
        ValidationError: ``settings.host`` is not loopback, no certificate is configured and ``insecure`` is
            off (field ``host``); the message says why and the two fixes.
    """
    if settings.tls_cert or settings.insecure or not exposes_network(settings.host):
        return
    raise ValidationError(
        f"refusing to serve on --host {settings.host} (TRAINFORGE_HOST) without TLS: API tokens and job data "
        "would cross the network in clear text. Serve https with --tls-cert CERT --tls-key KEY (or --tls "
        "self-signed), or pass --insecure (TRAINFORGE_INSECURE=1) if every machine on this network is trusted",
        field="host",
    )


def certificate_names(host: str, advertise_url: str | None = None) -> list[str]:
    """The names a self-signed certificate for a server bound to ``host`` must hold, in order: ``localhost``,
    ``127.0.0.1``, ``::1``, the machine's host name, the bind address (unless a wildcard) and the host of
    ``advertise_url`` (how supervisors on other nodes reach it)."""
    names = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    bare = host.strip().strip("[]")
    if not is_wildcard(bare):
        names.append(bare)
    if advertise_url:
        advertised = urlsplit(advertise_url).hostname
        if advertised:
            names.append(advertised)
    return _unique(_normal_name(n) for n in names if n)


def _normal_name(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name.split("%")[0]))
    except ValueError:
        return name.lower().rstrip(".")


def _unique(names: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name)
    return list(seen)


def _san_names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    dns = [_normal_name(n) for n in san.get_values_for_type(x509.DNSName)]
    ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return dns + ips


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    import fcntl

    with open(directory / ".lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _reusable_names(cert_path: Path, key_path: Path) -> list[str] | None:
    """The names of the existing generated certificate if it can be served again (readable, matching its key,
    valid for more than :data:`RENEW_DAYS`); else None."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        return None
    if cert.not_valid_after_utc - _now() < dt.timedelta(days=RENEW_DAYS):
        return None
    return _san_names(cert)


def _public_der(public_key: Any) -> bytes:
    """The DER SubjectPublicKeyInfo of any public key (to compare a certificate's with a private key's)."""
    from cryptography.hazmat.primitives import serialization

    der: bytes = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return der


def _build_certificate(names: list[str]) -> tuple[bytes, bytes]:
    """A new P-256 key and a self-signed CA certificate for ``names``, both PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "trainforge"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"trainforge self-signed {socket.gethostname()}"[:64]),
        ]
    )
    alt: list[x509.GeneralName] = []
    for name in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
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
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_self_signed(home: Path, names: list[str]) -> CertificateFiles:
    """The home's self-signed certificate for ``names``: the one in ``<home>/tls/`` when it holds every name,
    matches its key and is not about to expire; otherwise a new one (holding ``names`` and the old one's names).

    The directory is 0700, the key 0600, the certificate 0644; concurrent callers on one home are serialized.
    The certificate is its own CA (``CA:TRUE``), so clients trust it by pointing ``TRAINFORGE_CA_BUNDLE`` at it.
    """
    cert_path, key_path = self_signed_paths(home)
    directory = cert_path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    wanted = _unique(_normal_name(n) for n in names)
    with _locked(directory):
        existing = _reusable_names(cert_path, key_path)
        if existing is not None and set(wanted) <= set(existing):
            return CertificateFiles(cert_path, key_path, self_signed=True, generated=False)
        cert_pem, key_pem = _build_certificate(_unique([*wanted, *(existing or [])]))
        _write_atomic(key_path, key_pem, 0o600)
        _write_atomic(cert_path, cert_pem, 0o644)
    log.info("wrote a self-signed certificate for %s to %s", ", ".join(wanted), cert_path)
    return CertificateFiles(cert_path, key_path, self_signed=True, generated=True)


def _read(path: Path, flag: str, what: str) -> bytes:
    if not path.exists():
        raise ValidationError(f"{flag}: {path} does not exist (give the {what}, PEM)", field=flag.split()[0])
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"{flag}: cannot read {path} ({exc.strerror or exc})", field=flag.split()[0]) from None


def validate_pair(cert: Path, key: Path) -> None:
    """Check that ``cert`` is a current PEM certificate and ``key`` its unencrypted private key.

    Raises:
        ValidationError: One line naming the flag (``--tls-cert``/``--tls-key``) and what is wrong: a missing or
            unreadable file, not PEM, an expired certificate, an encrypted key, a key of another certificate.
    """
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        certificate = x509.load_pem_x509_certificates(_read(cert, CERT_FLAG, "server's certificate"))[0]
    except ValueError:
        raise ValidationError(f"{CERT_FLAG}: {cert} is not a PEM certificate", field="--tls-cert") from None
    if certificate.not_valid_after_utc < _now():
        raise ValidationError(
            f"{CERT_FLAG}: {cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}; renew it "
            f"(for --tls self-signed: delete it and start again)",
            field="--tls-cert",
        )
    key_bytes = _read(key, KEY_FLAG, "certificate's private key")
    try:
        private = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:
        raise ValidationError(
            f"{KEY_FLAG}: {key} is encrypted; give the key without a passphrase (file mode 0600)", field="--tls-key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValidationError(f"{KEY_FLAG}: {key} is not a PEM private key ({exc})", field="--tls-key") from None
    if _public_der(certificate.public_key()) != _public_der(private.public_key()):
        raise ValidationError(f"{KEY_FLAG}: {key} is not the key of the certificate {cert}", field="--tls-key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ValidationError(f"{CERT_FLAG}: {cert} cannot be served: {exc}", field="--tls-cert") from None


def prepare(settings: Settings, *, self_signed: bool = False) -> tuple[Settings, CertificateFiles | None]:
    """Settings a server can start with, and the certificate it will serve (None: plain http).

    With ``self_signed`` the home's certificate is made or reused (:func:`ensure_self_signed`) and set as
    ``tls_cert``/``tls_key``. Certificate and key paths are made absolute (a detached server runs in its home).
    Then the certificate is checked (:func:`validate_pair`), ``ca_bundle`` must be readable, and the loopback
    rule applies (:func:`check_bind`).

    Raises:
        ValidationError: One line naming the flag or setting to fix.
    """
    if self_signed and (settings.tls_cert or settings.tls_key):
        raise ValidationError(
            "--tls self-signed makes its own certificate: drop --tls-cert/--tls-key (TRAINFORGE_TLS_CERT/"
            "TRAINFORGE_TLS_KEY), or drop --tls self-signed to serve yours",
            field="--tls",
        )
    files: CertificateFiles | None = None
    if self_signed:
        files = ensure_self_signed(settings.resolved_home, certificate_names(settings.host, settings.advertise_url))
        settings = settings.model_copy(update={"tls_cert": files.cert, "tls_key": files.key})
    elif settings.tls_cert or settings.tls_key:
        if settings.tls_key is None:
            raise ValidationError(f"{KEY_FLAG} is required with {CERT_FLAG}", field="--tls-key")
        if settings.tls_cert is None:
            raise ValidationError(f"{CERT_FLAG} is required with {KEY_FLAG}", field="--tls-cert")
        cert = Path(os.path.abspath(settings.tls_cert.expanduser()))
        key = Path(os.path.abspath(settings.tls_key.expanduser()))
        settings = settings.model_copy(update={"tls_cert": cert, "tls_key": key})
        files = CertificateFiles(cert, key, self_signed=is_self_signed(settings))
    if files is not None:
        validate_pair(files.cert, files.key)
    if settings.ca_bundle is not None:
        bundle = Path(os.path.abspath(settings.ca_bundle.expanduser()))
        _read(bundle, CA_FLAG, "CA certificate(s) of the server's certificate")
        settings = settings.model_copy(update={"ca_bundle": bundle})
    check_bind(settings)
    return settings, files


def supervisor_ca_pem(settings: Settings) -> str | None:
    """The PEM a job's supervisors verify the server with: ``ca_bundle`` when set, else the certificate the server
    serves (so supervisors of a ``--tls self-signed`` server verify it, on any node), else None (system trust)."""
    for path in (settings.ca_bundle, settings.tls_cert):
        if path is None:
            continue
        try:
            return path.expanduser().read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            log.warning("cannot read %s for supervisors: %s", path, exc)
    return None
