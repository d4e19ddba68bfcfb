"""The per-call entry point every `podnet-<type>` executable runs.

Standard library only until it must run a plugin itself: if the agent's unix socket
answers, the request (CNI env + stdin) goes there as one raw HTTP/1.1 POST;
otherwise the same handler runs in this process.  DEL never depends on the agent:
if the agent fails mid-request, DEL runs in-process (same lock files, same state).
"""
from __future__ import annotations

import json
import os
import socket
import sys

DEFAULT_SOCKET = "/run/podnet/agent.sock"
TIMEOUT_ENV = "PODNET_AGENT_TIMEOUT"
NO_AGENT_ENV = "PODNET_NO_AGENT"


class AgentUnreachable(Exception):
    """Could not connect: nothing was sent, so running in-process is safe."""


class AgentFailed(Exception):
    """Connected, but no complete answer: the request may have run partly."""


def socket_path(stdin: bytes) -> str:
    """`agentSocket` from the network config, found without parsing unless present."""
    if b'"agentSocket"' in stdin:
        try:
            conf = json.loads(stdin)
            val = conf.get("agentSocket") if isinstance(conf, dict) else None
            if isinstance(val, str) and val:
                return val
        except ValueError:
            pass
    return DEFAULT_SOCKET


def encode_request(plugin_type: str, env: dict[str, str], stdin: bytes) -> bytes:
    body = json.dumps({"type": plugin_type, "env": env, "stdin": stdin.decode("latin-1")}).encode()
    head = (f"POST /cni HTTP/1.1\r\nHost: podnet\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    return head + body


def decode_response(raw: bytes) -> tuple[int, bytes, str]:
    """(exit code, stdout bytes, stderr text) from the agent's HTTP answer."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep or not head.startswith(b"HTTP/1.1 "):
        raise AgentFailed("malformed answer from the agent")
    if head.startswith(b"HTTP/1.1 403"):
        raise AgentUnreachable("the agent serves another network namespace")
    try:
        msg = json.loads(body)
        return int(msg["exitCode"]), msg["stdout"].encode("latin-1"), str(msg.get("stderr", ""))
    except (ValueError, KeyError, TypeError):
        raise AgentFailed("undecodable answer from the agent") from None


def call_agent(path: str, request: bytes, timeout: float) -> tuple[int, bytes, str]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError as e:
            raise AgentUnreachable(str(e)) from None
        try:
            s.sendall(request)
            chunks = []
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as e:  # timeout included
            raise AgentFailed(str(e)) from None
    finally:
        s.close()
    return decode_response(b"".join(chunks))


def cni_env(environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k.startswith("CNI_")}


def run_in_process(plugin_type: str, env: dict[str, str], stdin: bytes) -> tuple[int, bytes, str]:
    import logging
    logging.basicConfig(level=os.environ.get("PODNET_LOG_LEVEL", "WARNING"), stream=sys.stderr,
                        format="podnet %(levelname)s %(name)s: %(message)s")
    from .dispatch import handle
    out = handle(plugin_type, env, stdin)
    return out.exit_code, out.stdout, out.stderr


def _try_again(stdin: bytes, why: str) -> tuple[int, bytes, str]:
    ver = "1.1.0"
    try:
        conf = json.loads(stdin)
        ver = conf.get("cniVersion") or ver
    except (ValueError, AttributeError):
        pass
    body = {"cniVersion": ver, "code": 11, "msg": "podnet agent did not finish the request in time", "details": why}
    return 1, (json.dumps(body) + "\n").encode(), why + "\n"


def execute(plugin_type: str, environ: dict[str, str], stdin: bytes) -> tuple[int, bytes, str]:
    env = cni_env(environ)
    command = env.get("CNI_COMMAND")
    if command is None:
        from .cni.skel import about
        return 0, b"", about(plugin_type)
    if command == "VERSION":
        from .cni.skel import version_outcome
        return 0, version_outcome(stdin).stdout, ""
    if environ.get(NO_AGENT_ENV):
        return run_in_process(plugin_type, env, stdin)
    path = socket_path(stdin)
    try:
        timeout = float(environ.get(TIMEOUT_ENV, "60"))
        return call_agent(path, encode_request(plugin_type, env, stdin), timeout)
    except AgentUnreachable:
        return run_in_process(plugin_type, env, stdin)
    except AgentFailed as e:
        if command in ("DEL", "GC", "STATUS", "CHECK"):
            return run_in_process(plugin_type, env, stdin)
        return _try_again(stdin, str(e))


def main(plugin_type: str) -> int:
    stdin = b"" if os.environ.get("CNI_COMMAND") is None else sys.stdin.buffer.read()
    code, out, err = execute(plugin_type, dict(os.environ), stdin)
    if err:
        sys.stderr.write(err)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return code
