"""Several jobs creating the same SQLite store at once must all get in."""

from __future__ import annotations

import threading
from pathlib import Path

from marketpipe.foundation.sqlite import connect


def test_concurrent_first_connections_all_succeed(tmp_path: Path) -> None:
    failures: list[BaseException] = []

    def open_store(path: Path, start: threading.Barrier) -> None:
        start.wait()
        try:
            db = connect(path)
            db.execute("CREATE TABLE IF NOT EXISTS t (x)")
            db.close()
        except BaseException as exc:
            failures.append(exc)

    for trial in range(30):
        path = tmp_path / f"store-{trial}.sqlite"
        start = threading.Barrier(8)
        threads = [threading.Thread(target=open_store, args=(path, start)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
