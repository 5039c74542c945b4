"""TLS files for either side of a connection, and the gRPC credentials made from them.

Server side: `cert` and `key` are the server's; `ca`, when given, is the CA that client
certificates must chain to (mutual TLS: a client without one is refused). Client side: `ca`
verifies the server (default: the system's roots); `cert` and `key` are the client's own, for a
server that asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc

from xscore.api.errors import invalid


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise invalid("a TLS certificate and its key go together: give both or neither", field="tls")
        for path in (self.cert, self.key, self.ca):
            if path is not None and not Path(path).is_file():
                raise invalid(f"TLS file {path} does not exist", field="tls")

    @staticmethod
    def _read(path: Path | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    def server_credentials(self) -> grpc.ServerCredentials:
        if self.cert is None or self.key is None:
            raise invalid("a TLS server needs a certificate and its key", field="tls")
        return grpc.ssl_server_credentials([(self._read(self.key), self._read(self.cert))],
                                           root_certificates=self._read(self.ca),
                                           require_client_auth=self.ca is not None)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self._read(self.ca),
                                            private_key=self._read(self.key),
                                            certificate_chain=self._read(self.cert))
