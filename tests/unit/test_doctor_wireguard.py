"""`podnet doctor`'s WireGuard checks against an agent socket that answers GET /wireguard (a
small HTTP server on a unix socket standing in for the agent: the real agent's answer is
checked in tests/cluster/test_wireguard.py)."""
from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from podnet.doctor import FAIL, OK, WARN, check_wireguard


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    answer: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(answer["doc"]).encode() if "doc" in answer else b"{}"
            self.send_response(200 if "doc" in answer else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    path = str(tmp_path / "agent.sock")
    server = socketserver.UnixStreamServer(path, Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield path, answer
    finally:
        server.shutdown()
        server.server_close()


def peer(node: str, age: float | None) -> dict[str, Any]:
    return {"node": node, "public_key": "k" * 44, "endpoint": f"10.97.0.{node[1:]}:51820", "allowed_ips": [],
            "rx_bytes": 0, "tx_bytes": 0, "handshake_age": age}


def test_without_encryption_there_is_nothing_to_check(agent: tuple[str, dict[str, Any]]) -> None:
    assert list(check_wireguard(agent[0])) == []


def test_stale_and_missing_handshakes_warn_and_refused_nodes_fail(agent: tuple[str, dict[str, Any]]) -> None:
    path, answer = agent
    answer["doc"] = {"device": "podnet.wg", "implementation": "wireguard-go", "pid": 42, "listen_port": 51820,
                     "peers": [peer("n2", 12.0), peer("n3", 400.0), peer("n4", None)],
                     "refused": {"n5": "node n5 does not encrypt pod traffic and this node does (WireGuard)"}}
    got = [(f.level, f.detail) for f in check_wireguard(path)]
    assert got[0][0] == OK and "3 peers" in got[0][1]
    assert got[1][0] == OK and "n2" in got[1][1]
    assert got[2][0] == WARN and "n3" in got[2][1] and "400 s ago" in got[2][1]
    assert got[3][0] == WARN and "n4" in got[3][1] and "no handshake" in got[3][1]
    assert got[4] == (FAIL, "n5: node n5 does not encrypt pod traffic and this node does (WireGuard)")


def test_a_dead_device_fails(agent: tuple[str, dict[str, Any]]) -> None:
    path, answer = agent
    answer["doc"] = {"device": "podnet.wg", "implementation": "wireguard-go", "error": "socket: No such file",
                     "peers": []}
    assert [f.level for f in check_wireguard(path)] == [FAIL]
