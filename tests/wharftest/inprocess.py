"""A WSGI app on waitress in a thread of the test process, stopped cleanly.

``server.run()`` has no way to stop: closing the server while its loop polls the
sockets makes the loop thread fail with EBADF (seen as a failed test, by chance of
timing). This loop checks a flag between short polls and is closed after it ends.
"""

from __future__ import annotations

import threading
from typing import Any

import waitress


class ThreadedWaitress:
    def __init__(self, app: Any, **options: Any) -> None:
        self.server = waitress.create_server(app, host="127.0.0.1", port=0, **options)
        self.port: int = self.server.effective_port  # type: ignore[union-attr]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            self.server.asyncore.loop(timeout=0.05, map=self.server._map, count=1)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self.server.close()
