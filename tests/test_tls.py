"""TLS and mutual TLS on both transports, with certificates made in the test (trustme)."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
import pytest
from servers import RunningServer

from xscore.api.tls import TlsFiles
from xscore.client import RetryPolicy, ScorerClient
from xscore.service.serving.runtime import ServeConfig

trustme = pytest.importorskip("trustme")
NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1, and a client certificate from another CA."""
    root = tmp_path_factory.mktemp("pki")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("127.0.0.1", "localhost")
    client = client_ca.issue_cert("client.example")
    files = {"server_ca": root / "server-ca.pem", "client_ca": root / "client-ca.pem",
             "server_cert": root / "server.pem", "server_key": root / "server.key",
             "client_cert": root / "client.pem", "client_key": root / "client.key"}
    server_ca.cert_pem.write_to_path(files["server_ca"])
    client_ca.cert_pem.write_to_path(files["client_ca"])
    server.private_key_pem.write_to_path(files["server_key"])
    client.private_key_pem.write_to_path(files["client_key"])
    files["server_cert"].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    files["client_cert"].write_bytes(b"".join(blob.bytes() for blob in client.cert_chain_pems))
    return files


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code()


def test_tls_serves_grpc_and_https_and_refuses_plaintext(tiny_model, pki):
    tls = TlsFiles(pki["server_cert"], pki["server_key"])
    running = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=0, tls=tls))
    try:
        with ScorerClient(running.address, tls=TlsFiles(ca=pki["server_ca"]), retry=NO_RETRY) as client:
            assert client.score("q", ["d"], model="tiny").scores[0].item_id == "item-0"
        with ScorerClient(running.address, retry=NO_RETRY, timeout=5) as plaintext:
            assert code_of(lambda: plaintext.score("q", ["d"], model="tiny")) is grpc.StatusCode.UNAVAILABLE
        http = running.runtime.addresses["http"]
        assert httpx.get(f"https://{http}/healthz", verify=str(pki["server_ca"])).json() == {"status": "ok"}
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{http}/healthz", timeout=5)
    finally:
        running.stop()


def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(tiny_model, pki):
    tls = TlsFiles(pki["server_cert"], pki["server_key"], ca=pki["client_ca"])
    running = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=0, tls=tls))
    try:
        anonymous = TlsFiles(ca=pki["server_ca"])
        with ScorerClient(running.address, tls=anonymous, retry=NO_RETRY, timeout=5) as stranger:
            assert code_of(lambda: stranger.score("q", ["d"], model="tiny")) is grpc.StatusCode.UNAVAILABLE
        member = TlsFiles(pki["client_cert"], pki["client_key"], ca=pki["server_ca"])
        with ScorerClient(running.address, tls=member, retry=NO_RETRY) as client:
            assert client.score("q", ["d"], model="tiny").scores[0].item_id == "item-0"
        http = running.runtime.addresses["http"]
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://{http}/healthz", verify=str(pki["server_ca"]), timeout=5)
        context = ssl.create_default_context(cafile=str(pki["server_ca"]))
        context.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
        with httpx.Client(verify=context) as ok:
            assert ok.get(f"https://{http}/healthz").status_code == 200
    finally:
        running.stop()


def test_tls_files_are_checked_before_serving(pki, tmp_path):
    from xscore.api.errors import XscoreError

    with pytest.raises(XscoreError, match="give both or neither"):
        TlsFiles(pki["server_cert"], None)
    with pytest.raises(XscoreError, match="does not exist"):
        TlsFiles(pki["server_cert"], tmp_path / "missing.key")
