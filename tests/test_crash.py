"""kill -9 during a burst of posts loses no acknowledged update."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import requests

from tests.server_process import API_KEY, ServerProcess

WRITERS = 8


def _post_forever(
    url: str, row: int, stop: threading.Event, acked: dict[int, int]
) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {API_KEY}"
    sequence = 0
    while not stop.is_set():
        sequence += 1
        body = {
            "app": "Crash",
            "domain": f"Row{row}",
            "status": "Loading" if sequence % 2 else "OK",
            "job_id": str(sequence),
            "message": f"update {sequence}",
        }
        try:
            response = session.post(url + "/api/v1/status", json=body, timeout=5)
        except requests.RequestException:
            return
        if response.status_code == 200:
            acked[row] = sequence


def test_kill_9_loses_no_acknowledged_update(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    unlimited = {"EPMPULSE_RATE_LIMIT_POST": "1000000 per minute"}
    server = ServerProcess(data_dir, unlimited).start()
    acked: dict[int, int] = {}
    stop = threading.Event()
    threads = [
        threading.Thread(target=_post_forever, args=(server.url, row, stop, acked))
        for row in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join(timeout=10)

    assert len(acked) == WRITERS, f"some writers got no 200 at all: {acked}"
    state = json.loads((data_dir / "epmpulse.json").read_text())
    assert "rows" in state

    with ServerProcess(data_dir, unlimited, port=server.port) as restarted:
        rows = restarted.get("/api/v1/status").json()["apps"]["Crash"]
        history = restarted.get("/api/v1/history?app=Crash&limit=1000").json()
    for row, last_acked in acked.items():
        stored = int(rows[f"Row{row}"]["job_id"])
        # The stored row may be newer than the last 200 (a write that finished
        # just before the kill), but never older.
        assert stored >= last_acked, f"Row{row}: acked {last_acked}, stored {stored}"
    logged = {(event["domain"], int(event["job_id"])) for event in history["events"]}
    for row, last_acked in acked.items():
        assert (f"Row{row}", last_acked) in logged, (
            f"Row{row} {last_acked} not in history"
        )
