"""A TLS front for a loopback server, with a test CA (trustme): for clients that insist on
https (uv's trusted publishing). Each connection is a byte tunnel to the plain server."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import trustme


class TlsTunnel:
    def __init__(self, target_port: int, folder: Path) -> None:
        self.target_port = target_port
        self.ca = trustme.CA()
        self.ca_path = folder / "test-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_path))
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self._context.wrap_socket(conn, server_side=True)
        except (OSError, ssl.SSLError):
            conn.close()
            return
        with tls, socket.create_connection(("127.0.0.1", self.target_port)) as upstream:
            back = threading.Thread(target=_pump, args=(upstream, tls), daemon=True)
            back.start()
            _pump(tls, upstream)
            back.join(30)

    def stop(self) -> None:
        self._stopped = True
        self._listener.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except (OSError, ssl.SSLError):
        pass
    finally:
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
