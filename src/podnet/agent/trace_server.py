"""The agent's trace endpoint on the node's address (`trace-port`, default 9473; 0: off): GET
/trace/hop only, read-only, so `podnet trace` on any node can ask every node for its own hops.

It answers routing facts (routes, VXLAN entries, which pod has an address, policy verdicts) to
whoever can reach the node's address on that port — what `ip route get` on the node would show.
Clusters that treat that as sensitive set `trace-port: 0` (traces then stop at the local node)
or filter the port to the nodes' network.
"""
from __future__ import annotations

import json
import logging
import socketserver
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, str]], tuple[int, dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    def server_bind(self) -> None:
        """HTTPServer's own looks its address up in DNS (getfqdn): ~10 s on a node without a
        resolver (the lab's), for a name nobody reads."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


def serve(addr: str, port: int, handle: Handler) -> Callable[[], None]:
    """Serve GET /trace/hop on addr:port in a thread; returns a stop function."""

    class TraceRequest(BaseHTTPRequestHandler):
        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("trace %s", fmt % args)

        def do_GET(self) -> None:
            path, _, qs = self.path.partition("?")
            if path != "/trace/hop":
                status, doc = 404, {"error": "not found"}
            else:
                try:
                    status, doc = handle({k: v[-1] for k, v in urllib.parse.parse_qs(qs).items()})
                except Exception as e:  # noqa: BLE001 - an introspection error is the answer
                    log.warning("trace: %s", e)
                    status, doc = 500, {"error": f"{type(e).__name__}: {e}"}
            body = (json.dumps(doc) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = _Server((addr, port), TraceRequest)
    srv.daemon_threads = True
    # no poll timeout: an idle agent does not wake for this; stop() closes the socket and the
    # (daemon) thread ends with the process
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": None}, name="trace-server",
                     daemon=True).start()
    log.info("trace endpoint on %s:%d", addr, port)
    return srv.server_close
