"""The server's log: formatted in the thread that logs, written to stderr by one thread.

With a plain ``StreamHandler`` every access-log line took the handler's lock and made a
write to stderr inside the request, and sixteen request threads queued on that lock (a
quarter of the project page's throughput on waitress, measured). Here a record is
formatted where it is logged and appended to a deque (no lock, no wake-up); a writer
thread wakes every ``INTERVAL`` seconds and writes whatever lines are waiting at once.
A queue that woke the writer per line cost uvicorn's single event-loop thread a fifth
of its throughput in GIL hand-overs. A slow reader of stderr slows nobody's request:
past ``MAX_PENDING`` waiting lines, further lines are dropped and counted, and the count
is written once the writer catches up.

A message never spans lines: control characters in it (a CR/LF or NUL that a client put
in a request path, say) are written as escapes (``\\r``, ``\\x00``), so no one can forge a
log line. A traceback after the message keeps its lines.
"""

from __future__ import annotations

import atexit
import collections
import logging
import sys
import threading
from typing import TextIO

MAX_PENDING = 100_000
INTERVAL = 0.05  # seconds: how stale a log line may be before it is written
#: C0 and C1 controls, DEL and the Unicode line and paragraph separators → escapes.
_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x09
}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\u2028", 0x2029: "\\u2029"})


def escape_controls(text: str) -> str:
    """``text`` on one line: control characters (tab aside) as backslash escapes."""
    if text.isprintable():  # every escaped character is unprintable: nothing to do
        return text  # (a dict-driven translate cost every access-log line ~3 µs)
    return text.translate(_ESCAPES)


class OneLineFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose message part is always one line (``escape_controls``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        escaped = escape_controls(record.message)
        if escaped != record.message:
            # A copy: other handlers of the same record see it unchanged.
            record = logging.makeLogRecord({**record.__dict__, "message": escaped})
        return super().formatMessage(record)


class BackgroundLogHandler(logging.Handler):
    def __init__(self, stream: TextIO | None = None, max_pending: int = MAX_PENDING) -> None:
        super().__init__()
        self._stream = stream  # None: sys.stderr as it is when a line is written
        self._max_pending = max_pending
        self._lines: collections.deque[str] = collections.deque()
        self._dropped = 0
        self._dropped_lock = threading.Lock()
        self._stop = threading.Event()
        self._writer_done = threading.Event()
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
            self.handleError(record)  # logging's own contract: never raise
            return
        if self._writer_done.is_set():  # the writer has ended: write it here and now
            self._lines.append(line)
            self._write_waiting()
            return
        if len(self._lines) < self._max_pending:
            self._lines.append(line)  # deque.append is atomic
        else:
            with self._dropped_lock:
                self._dropped += 1

    def _write(self) -> None:
        while True:
            stopping = self._stop.wait(INTERVAL)
            self._write_waiting()
            if stopping:
                return

    def _write_waiting(self) -> None:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
            if len(lines) >= self._max_pending:
                break
        with self._dropped_lock:
            dropped, self._dropped = self._dropped, 0
        if dropped:
            lines.append(f"pywharf: {dropped} log lines dropped (stderr too slow)\n")
        if not lines:
            return
        stream = self._stream or sys.stderr
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):  # stderr closed: nothing left to tell
            pass

    def close(self) -> None:
        """Writes what is waiting, then ends the writer; lines logged afterwards are
        written at once (idempotent)."""
        self._stop.set()
        if self._writer.is_alive() and self._writer is not threading.current_thread():
            self._writer.join(timeout=5)
        self._writer_done.set()
        self._write_waiting()  # whatever arrived while the writer was finishing
        super().close()


def flush() -> None:
    """Write every waiting line now: called when the server stops (SIGTERM included),
    so that the last requests' lines are not lost with the process."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, BackgroundLogHandler):
            handler.close()


def configure(debug: bool) -> None:
    """The server's logging: everything at INFO (DEBUG with --debug) to stderr. Leaves
    logging alone when the process has configured it already."""
    if logging.getLogger().handlers:
        return
    handler = BackgroundLogHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])
