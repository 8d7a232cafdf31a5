"""TLS pieces on their own: the self-signed certificate, certificate checks, the loopback rule, and clients
(SDK probe, supervisor agent) verifying a real https listener."""

from __future__ import annotations

import datetime as dt
import json
import os
import ssl
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from trainforge.client import TrainforgeClient
from trainforge.errors import AuthError, ServerUnavailableError, ValidationError
from trainforge.local_server import probe_health
from trainforge.runtime.agent import AgentClient, ReplyKind, ServerLocator
from trainforge.server import tls
from trainforge.settings import Settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TRAINFORGE_CA_BUNDLE", "TRAINFORGE_HOST", "TRAINFORGE_INSECURE", "TRAINFORGE_TLS_CERT"):
        monkeypatch.delenv(name, raising=False)


def names_of(cert_path: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(san.get_values_for_type(x509.DNSName)) | {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


# -- the self-signed certificate ------------------------------------------------------------------------------


def test_self_signed_certificate_is_made_once_private_and_reused(tmp_path: Path) -> None:
    names = tls.certificate_names("192.0.2.7", "https://trainforge.internal:8443")
    assert names[:3] == ["localhost", "127.0.0.1", "::1"] and names[-2:] == ["192.0.2.7", "trainforge.internal"]
    first = tls.ensure_self_signed(tmp_path, names)
    assert first.generated and first.self_signed and first.cert == tmp_path / "tls" / "cert.pem"
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(first.cert.parent.stat().st_mode) == 0o700
    assert names_of(first.cert) == set(names)
    cert = x509.load_pem_x509_certificate(first.cert.read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca  # usable as a CA bundle
    assert cert.issuer == cert.subject
    before = first.cert.read_bytes(), first.key.read_bytes()

    again = tls.ensure_self_signed(tmp_path, ["localhost", "127.0.0.1"])
    assert not again.generated and (again.cert.read_bytes(), again.key.read_bytes()) == before

    wider = tls.ensure_self_signed(tmp_path, ["localhost", "198.51.100.1"])
    assert wider.generated and names_of(wider.cert) == set(names) | {"198.51.100.1"}
    tls.validate_pair(wider.cert, wider.key)


def test_a_broken_self_signed_pair_is_made_anew(tmp_path: Path) -> None:
    made = tls.ensure_self_signed(tmp_path, ["localhost"])
    made.key.write_text("garbage")
    remade = tls.ensure_self_signed(tmp_path, ["localhost"])
    assert remade.generated
    tls.validate_pair(remade.cert, remade.key)


def test_prepare_with_self_signed_sets_the_settings_and_marks_it(tmp_path: Path) -> None:
    settings, files = tls.prepare(Settings(home=tmp_path, host="0.0.0.0"), self_signed=True)
    assert files is not None and files.self_signed
    assert settings.tls_cert == tmp_path / "tls" / "cert.pem" and tls.is_self_signed(settings)
    assert "0.0.0.0" not in names_of(files.cert)  # a wildcard is no name a client connects to
    with pytest.raises(ValidationError, match="--tls self-signed makes its own certificate"):
        tls.prepare(Settings(home=tmp_path, tls_cert=files.cert, tls_key=files.key), self_signed=True)


# -- checks of a given certificate ----------------------------------------------------------------------------


def write_pair(directory: Path, *, days: int = 30, encrypted: bool = False) -> tuple[Path, Path]:
    """A certificate for ``localhost`` and its key, written with cryptography directly (not by the code tested)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=60))
        .not_valid_after(now + dt.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    encryption = serialization.BestAvailableEncryption(b"secret") if encrypted else serialization.NoEncryption()
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return directory / "cert.pem", directory / "key.pem"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing cert", r"^--tls-cert \(TRAINFORGE_TLS_CERT\): .*/nope\.pem does not exist"),
        ("missing key", r"^--tls-key \(TRAINFORGE_TLS_KEY\): .*/nope\.key does not exist"),
        ("not pem", r"^--tls-cert \(TRAINFORGE_TLS_CERT\): .* is not a PEM certificate"),
        ("other key", r"^--tls-key \(TRAINFORGE_TLS_KEY\): .* is not the key of the certificate"),
        ("encrypted key", r"^--tls-key \(TRAINFORGE_TLS_KEY\): .* is encrypted"),
        ("expired", r"^--tls-cert \(TRAINFORGE_TLS_CERT\): .* expired on"),
        ("key only", r"^--tls-cert \(TRAINFORGE_TLS_CERT\) is required with --tls-key"),
    ],
)
def test_a_certificate_that_cannot_be_served_is_one_line_naming_the_flag(
    tmp_path: Path, case: str, message: str
) -> None:
    cert, key = write_pair(tmp_path / "a")
    other_cert, other_key = write_pair(tmp_path / "b")
    settings = {
        "missing cert": {"tls_cert": tmp_path / "nope.pem", "tls_key": key},
        "missing key": {"tls_cert": cert, "tls_key": tmp_path / "nope.key"},
        "not pem": {"tls_cert": key, "tls_key": key},
        "other key": {"tls_cert": cert, "tls_key": other_key},
        "encrypted key": {"tls_cert": cert, "tls_key": write_pair(tmp_path / "c", encrypted=True)[1]},
        "expired": dict(zip(("tls_cert", "tls_key"), write_pair(tmp_path / "d", days=-1), strict=True)),
        "key only": {"tls_key": key},
    }[case]
    with pytest.raises(ValidationError, match=message) as info:
        tls.prepare(Settings(home=tmp_path / "home", **settings))
    assert "\n" not in info.value.message
    ready, files = tls.prepare(Settings(home=tmp_path / "home", tls_cert=other_cert, tls_key=other_key))
    assert files is not None and not files.self_signed and ready.tls_cert == other_cert


def test_relative_certificate_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_pair(tmp_path / "certs")
    monkeypatch.chdir(tmp_path)
    ready, _ = tls.prepare(Settings(home=tmp_path / "home", tls_cert="certs/cert.pem", tls_key="certs/key.pem"))
    assert ready.tls_cert == tmp_path / "certs" / "cert.pem" and ready.tls_cert.is_absolute()


# -- the loopback rule ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "exposed"),
    [
        ("127.0.0.1", False),
        ("127.0.0.5", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("0.0.0.0", True),
        ("::", True),
        ("192.0.2.10", True),
        ("no-such-host.invalid", False),  # cannot be bound either: the bind reports it
    ],
)
def test_which_hosts_expose_the_server(host: str, exposed: bool) -> None:
    assert tls.exposes_network(host) is exposed


def test_a_network_bind_needs_tls_or_insecure(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        tls.prepare(Settings(home=tmp_path, host="0.0.0.0"))
    text = info.value.message
    assert "refusing to serve on --host 0.0.0.0" in text and "clear text" in text
    assert "--tls-cert CERT --tls-key KEY" in text and "--insecure" in text and info.value.field == "host"
    tls.prepare(Settings(home=tmp_path, host="0.0.0.0", insecure=True))
    tls.prepare(Settings(home=tmp_path, host="0.0.0.0"), self_signed=True)
    tls.prepare(Settings(home=tmp_path, host="127.0.0.1"))


def test_url_host_of_a_wildcard_bind_is_loopback() -> None:
    assert tls.loopback_url_host("0.0.0.0") == "127.0.0.1"
    assert tls.loopback_url_host("::") == "[::1]"
    assert tls.loopback_url_host("::1") == "[::1]"
    assert tls.loopback_url_host("10.0.0.2") == "10.0.0.2"


def test_supervisors_get_the_ca_bundle_else_the_served_certificate(tmp_path: Path) -> None:
    cert, key = write_pair(tmp_path / "a")
    bundle, _ = write_pair(tmp_path / "b")
    assert tls.supervisor_ca_pem(Settings(home=tmp_path)) is None
    assert tls.supervisor_ca_pem(Settings(home=tmp_path, tls_cert=cert, tls_key=key)) == cert.read_text()
    with_bundle = Settings(home=tmp_path, tls_cert=cert, tls_key=key, ca_bundle=bundle)
    assert tls.supervisor_ca_pem(with_bundle) == bundle.read_text()


# -- clients against a real https listener --------------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "version": "t", "pid": os.getpid()}).encode()
        self.send_response(200 if self.path == "/health" or self.command == "POST" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real https listener on 127.0.0.1 serving a ``--tls self-signed`` certificate made for ``localhost`` only
    (so ``127.0.0.1`` is a hostname mismatch); yields ``(port, certificate)``."""
    files = tls.ensure_self_signed(tmp_path / "srv", ["localhost"])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert, files.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(server.server_address[1]), files.cert
    finally:
        server.shutdown()
        server.server_close()


def test_sdk_clients_verify_and_say_which_bundle_to_set(https_server: tuple[str, Path], tmp_path: Path) -> None:
    port, cert = https_server
    url = f"https://localhost:{port}"
    with pytest.raises(AuthError) as info:
        probe_health(url, server_cert=str(cert))
    assert info.value.message == (
        f"cannot verify the TLS certificate of {url} (self-signed certificate): set TRAINFORGE_CA_BUNDLE to the "
        f"server's CA certificate (for --tls self-signed: {cert})"
    )
    with pytest.raises(AuthError, match="cannot verify the TLS certificate"):
        TrainforgeClient(url, "t", ca_bundle=write_pair(tmp_path / "wrong")[0]).health()
    assert TrainforgeClient(url, "t", ca_bundle=cert).health()["status"] == "ok"
    with pytest.raises(AuthError, match=r"\(IP address mismatch.*reach the server by a name its certificate holds"):
        TrainforgeClient(f"https://127.0.0.1:{port}", "t", ca_bundle=cert).health()
    with pytest.raises(ValidationError, match=r"TRAINFORGE_CA_BUNDLE=.*missing\.pem"):
        TrainforgeClient(url, "t", ca_bundle=tmp_path / "missing.pem")


def test_plain_http_to_a_tls_port_says_to_use_https(https_server: tuple[str, Path]) -> None:
    port, _ = https_server
    with pytest.raises(
        ServerUnavailableError, match=rf"at http://localhost:{port}: it serves https; use https://localhost:{port}"
    ):
        TrainforgeClient(f"http://localhost:{port}", "t").health()


def test_supervisor_agent_verifies_with_the_handed_pem_or_the_server_file(
    https_server: tuple[str, Path], tmp_path: Path
) -> None:
    port, cert = https_server
    url = f"https://localhost:{port}"

    def reply(locator: ServerLocator) -> tuple[ReplyKind, str]:
        client = AgentClient(locator=locator, token="t", job_name="j", host="algo-1")
        try:
            answer = client.send("status", {"x": 1})
        finally:
            client.close()
        return answer.kind, answer.error

    kind, error = reply(ServerLocator(url))
    assert kind is ReplyKind.RETRY and "cannot verify the TLS certificate" in error
    assert reply(ServerLocator(url, ca_bundle_pem=cert.read_text()))[0] is ReplyKind.OK
    server_file = tmp_path / "server.json"
    server_file.write_text(json.dumps({"url": url, "cert": str(cert), "self_signed": True}))
    assert reply(ServerLocator(url, server_file))[0] is ReplyKind.OK
