"""The server's log: formatted in the thread that logs, written to stderr by one thread.

With a plain ``StreamHandler`` every access-log line took the handler's lock and made a
write to stderr inside the request, and sixteen request threads queued on that lock (a
quarter of the project page's throughput on waitress, measured). Here a record is
formatted where it is logged and put on a queue; a writer thread joins whatever lines
are waiting and writes them at once. A slow reader of stderr therefore slows nobody's
request: when the queue is full (``MAX_PENDING`` lines), further lines are dropped and
counted, and the count is written once the writer catches up.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
from typing import TextIO

MAX_PENDING = 100_000
MAX_BATCH = 2_000
_STOP = object()


class BackgroundLogHandler(logging.Handler):
    def __init__(self, stream: TextIO | None = None, max_pending: int = MAX_PENDING) -> None:
        super().__init__()
        self._stream = stream  # None: sys.stderr as it is when a line is written
        self._queue: queue.Queue[object] = queue.Queue(max_pending)
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._writer = threading.Thread(target=self._write, name="pywharf-log", daemon=True)
        self._writer.start()
        atexit.register(self.close)

    def handle(self, record: logging.LogRecord) -> bool:
        # Handler.handle would take the handler's lock around emit; emit needs none.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        try:
            self._queue.put_nowait(line)
        except queue.Full:
            with self._dropped_lock:
                self._dropped += 1

    def _write(self) -> None:
        while True:
            item = self._queue.get()
            lines: list[str] = []
            stop = item is _STOP
            if not stop:
                lines.append(str(item))
            while not stop and len(lines) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                else:
                    lines.append(str(item))
            with self._dropped_lock:
                dropped, self._dropped = self._dropped, 0
            if dropped:
                lines.append(f"pywharf: {dropped} log lines dropped (stderr too slow)\n")
            stream = self._stream or sys.stderr
            try:
                stream.write("".join(lines))
                stream.flush()
            except (OSError, ValueError):  # stderr closed: nothing left to tell
                pass
            if stop:
                return

    def close(self) -> None:
        """Writes what is queued, then ends the writer (idempotent)."""
        if self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=5)
        super().close()


def configure(debug: bool) -> None:
    """The server's logging: everything at INFO (DEBUG with --debug) to stderr. Leaves
    logging alone when the process has configured it already."""
    if logging.getLogger().handlers:
        return
    handler = BackgroundLogHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
