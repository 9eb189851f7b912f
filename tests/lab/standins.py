"""Stand-ins for the coordinator and the agent, for testing how the lab runs them.

    python standins.py coordinator HOST:PORT   serves GET /healthz
    python standins.py agent                   records what it sees, then waits

The agent stand-in writes ``standin.json`` into its ``SEGSCAN_STATE_DIR``: its
environment and what ``GET $SEGSCAN_COORDINATOR_URL/healthz`` answered.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import sys
import urllib.request
from pathlib import Path

ENV_KEYS = (
    "SEGSCAN_SUBNET",
    "SEGSCAN_COORDINATOR_URL",
    "SEGSCAN_SQS_ENDPOINT",
    "SEGSCAN_STATE_DIR",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/healthz" else 404
        body = b'{"status":"ok"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def coordinator(listen: str) -> None:
    host, _, port = listen.rpartition(":")
    http.server.HTTPServer((host, int(port)), _Health).serve_forever()


def agent() -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = os.environ["SEGSCAN_COORDINATOR_URL"] + "/healthz"
    with opener.open(url, timeout=5) as response:
        health = [response.status, response.read().decode()]
    report = {"env": {key: os.environ.get(key) for key in ENV_KEYS}, "health": health}
    state_dir = Path(os.environ["SEGSCAN_STATE_DIR"])
    (state_dir / "standin.json").write_text(json.dumps(report))
    signal.pause()


if __name__ == "__main__":
    if sys.argv[1] == "coordinator":
        coordinator(sys.argv[2])
    else:
        agent()
