"""The server's log handler: lines are written by one thread, none lost, none blocking."""

from __future__ import annotations

import io
import logging
import threading

from pywharf_core.logs import BackgroundLogHandler


def logger_with(handler: logging.Handler, name: str) -> logging.Logger:
    handler.setFormatter(logging.Formatter("%(threadName)s %(message)s"))
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return logger


def test_every_line_from_many_threads_is_written_in_each_threads_order() -> None:
    stream = io.StringIO()
    handler = BackgroundLogHandler(stream)
    log = logger_with(handler, "test.logs.many")

    def work(n: int) -> None:
        for i in range(2000):
            log.info("line %d", i)

    threads = [threading.Thread(target=work, args=(n,), name=f"t{n}") for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()  # writes what is queued
    lines = stream.getvalue().splitlines()
    assert len(lines) == 8 * 2000
    for n in range(8):
        mine = [int(line.split()[-1]) for line in lines if line.startswith(f"t{n} ")]
        assert mine == list(range(2000))


def test_a_stuck_stderr_drops_and_counts_instead_of_blocking() -> None:
    release = threading.Event()

    class Stuck(io.StringIO):
        def write(self, text: str) -> int:
            release.wait(30)
            return super().write(text)

    stream = Stuck()
    handler = BackgroundLogHandler(stream, max_pending=10)
    log = logger_with(handler, "test.logs.stuck")
    done = threading.Event()

    def flood() -> None:
        for i in range(100):
            log.info("line %d", i)
        done.set()

    threading.Thread(target=flood).start()
    assert done.wait(10), "logging blocked on a stuck stream"
    release.set()
    handler.close()
    text = stream.getvalue()
    written = [line for line in text.splitlines() if line.startswith("Thread")]
    assert 10 <= len(written) < 100
    assert f"{100 - len(written)} log lines dropped" in text
