"""The pinned client: it connects to the checked address, never to what the name resolves to,
while Host, TLS SNI and certificate verification stay those of the URL's host name.

Real sockets on loopback, a real TLS handshake with a certificate made here; the host names
(``*.example.test``) resolve nowhere, so any lookup by the client would fail the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from crm_notifications.adapters.pinned_http import pinned, pinned_client

HOST = "hook.example.test"


@dataclass
class Server:
    port: int
    hosts: list[str] = field(default_factory=list)  # the Host header of each request
    sni: list[str | None] = field(default_factory=list)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server) -> None:
    try:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in head[1:] if ":" in ln)}
        await reader.readexactly(int(headers.get("content-length", "0")))
        server.hosts.append(headers["host"])
        writer.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def plain() -> AsyncIterator[Server]:
    state = Server(0)
    srv = await asyncio.start_server(lambda r, w: _serve(r, w, state), "127.0.0.1", 0)
    state.port = srv.sockets[0].getsockname()[1]
    async with srv:
        yield state


def _certificate(tmp: Path, name: str) -> tuple[Path, Path, bytes]:
    """A self-signed certificate for ``name`` (its own CA): cert file, key file, PEM to trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp / "cert.pem").write_bytes(pem)
    (tmp / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp / "cert.pem", tmp / "key.pem", pem


async def test_the_request_goes_to_the_pinned_address_with_the_names_host_header(plain: Server) -> None:
    url = f"http://{HOST}:{plain.port}/in"
    async with pinned_client(5, {}) as client:
        with pinned(url, ["127.0.0.1"]):
            response = await client.post(url, content=b"{}")
    assert response.status_code == 204
    assert plain.hosts == [f"{HOST}:{plain.port}"]


async def test_without_a_pin_nothing_is_connected(plain: Server) -> None:
    async with pinned_client(5, {}) as client:
        with pytest.raises(httpx.ConnectError, match="no checked address"):
            await client.post(f"http://127.0.0.1:{plain.port}/in", content=b"{}")
        # A pin for another host does not open this one.
        with pinned(f"http://other.example.test:{plain.port}/", ["127.0.0.1"]), pytest.raises(httpx.ConnectError):
            await client.post(f"http://{HOST}:{plain.port}/in", content=b"{}")
    assert plain.hosts == []


async def test_the_next_checked_address_is_tried_when_one_refuses(plain: Server) -> None:
    url = f"http://{HOST}:{plain.port}/in"
    async with pinned_client(5, {}) as client:
        # Nothing listens on 127.0.0.2 at that port: refused, then the next checked address.
        with pinned(url, ["127.0.0.2", "127.0.0.1"]):
            response = await client.post(url, content=b"{}")
    assert response.status_code == 204 and plain.hosts == [f"{HOST}:{plain.port}"]


async def test_tls_is_verified_for_the_host_name_and_sends_it_as_sni(tmp_path: Path) -> None:
    cert, key, pem = _certificate(tmp_path, HOST)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    state = Server(0)

    def remember_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        state.sni.append(name)

    server_tls.sni_callback = remember_sni
    srv = await asyncio.start_server(lambda r, w: _serve(r, w, state), "127.0.0.1", 0, ssl=server_tls)
    state.port = srv.sockets[0].getsockname()[1]
    trust = ssl.create_default_context(cadata=pem.decode())
    async with srv, pinned_client(5, {}, verify=trust) as client:
        url = f"https://{HOST}:{state.port}/in"
        with pinned(url, ["127.0.0.1"]):
            response = await client.post(url, content=b"{}")
        assert response.status_code == 204
        assert state.sni == [HOST] and state.hosts == [f"{HOST}:{state.port}"]

        # The certificate is for hook.example.test: another name pinned to the same address fails
        # verification instead of being accepted because the address matches.
        other = f"https://other.example.test:{state.port}/in"
        with pinned(other, ["127.0.0.1"]), pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await client.post(other, content=b"{}")
