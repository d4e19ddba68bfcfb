"""Hostile and broken clients on the agent's socket: garbage, truncated requests, oversized
bodies, hundreds of idle connections, slow clients, clients that hang up mid-request, peers that
are not root.  After each, the agent still serves a normal request within 2 s, its memory stays
bounded, and its log has no traceback."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from podnet.agent.server import REQUEST_DEADLINE
from podnet.launcher import decode_response, encode_request
from tests.conftest import Agent

CLIENT = r"""
import socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
data = sys.stdin.buffer.read()
def conn():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(60)
    s.connect(path)
    return s
def drain(s):
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        pass
    return out
if mode == "send":                       # send everything, half-close, print the answer
    s = conn(); s.sendall(data); s.shutdown(socket.SHUT_WR); sys.stdout.buffer.write(drain(s))
elif mode == "hangup":                   # send, close without reading
    s = conn(); s.sendall(data); s.close()
elif mode == "idle":                     # hold N connections open until stdin… was read; then wait to be killed
    held = [conn() for _ in range(int(sys.argv[3]))]
    print("ready", flush=True); time.sleep(3600)
elif mode == "slow":                     # one byte a second; print how long until the agent closed
    s = conn(); t0 = time.monotonic()
    try:
        for ch in data:
            s.send(bytes([ch])); time.sleep(1.0)
        drain(s)
    except OSError:
        pass
    print(f"{time.monotonic() - t0:.1f}")
"""


def client(sandbox: str, sock: str, mode: str, data: bytes = b"", *extra: str) -> bytes:
    """Run a raw client inside the sandbox netns (the agent refuses other namespaces)."""
    p = subprocess.run(["ip", "netns", "exec", sandbox, "/usr/bin/python3", "-c", CLIENT, sock, mode, *extra],
                       input=data, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def agent_pid(agent: Agent) -> int:
    """`ip netns exec` execs the agent in place: the process it started is the agent."""
    return agent.proc.pid


@pytest.fixture
def running(sandbox: str, agent_factory, make_pod) -> Iterator[tuple[Agent, str]]:  # type: ignore[no-untyped-def]
    agent = agent_factory(sandbox)
    yield agent, make_pod()


def normal_add_within(sandbox: str, agent: Agent, pod: str, seconds: float = 2.0) -> float:
    """A loopback ADD (what containerd sends for every pod), through the agent (its count of
    served requests goes up: not the launcher's in-process fallback)."""
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"n{time.monotonic_ns()}", "CNI_NETNS": pod, "CNI_IFNAME": "lo",
           "CNI_PATH": "/opt/cni/bin"}
    before = served(sandbox, agent)
    t0 = time.monotonic()
    raw = client(sandbox, agent.sock, "send",
                 encode_request("loopback", env, b'{"cniVersion":"1.0.0","name":"lo","type":"podnet-loopback"}'))
    took = time.monotonic() - t0
    code, out, err = decode_response(raw)
    assert code == 0 and b'"interfaces"' in out, (out, err)
    assert took <= seconds, f"a normal ADD took {took:.2f}s"
    assert served(sandbox, agent) == before + 1
    return took


def served(sandbox: str, agent: Agent) -> int:
    """How many loopback ADDs the agent has served (its /metrics)."""
    text = client(sandbox, agent.sock, "send", b"GET /metrics HTTP/1.1\r\n\r\n").decode()
    for line in text.splitlines():
        if line.startswith('podnet_cni_request_seconds_count{command="ADD",plugin="loopback"}'):
            return int(float(line.split()[-1]))
    return 0


def no_traceback(agent: Agent) -> None:
    log = Path(agent.log).read_text()
    assert "Traceback" not in log, log[-3000:]


def test_garbage_and_truncated_requests_cost_nothing(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, pod = running
    for junk in [b"\x00\xff" * 5000, b"GET", b"POST /cni/bridge HTTP/1.1\r\n", b"POST /cni/bridge HTTP/1.1\r\n"
                 b"Content-Length: 100\r\nX-Cni-Env-Length: 5\r\n\r\nCNI_C", b"POST /cni/x HTTP/1.1\r\n"
                 b"Content-Length: 3\r\nX-Cni-Env-Length: 9\r\n\r\nabc", b"\r\n\r\n\r\n", b"A" * 70000 + b"\r\n\r\n"]:
        client(sandbox, agent.sock, "send", junk)
    normal_add_within(sandbox, agent, pod)
    no_traceback(agent)


def test_an_oversized_body_is_refused_before_it_is_read(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, pod = running
    before = rss_kib(agent_pid(agent))
    t0 = time.monotonic()
    raw = client(sandbox, agent.sock, "send",
                 b"POST /cni/bridge HTTP/1.1\r\nContent-Length: 104857600\r\nX-Cni-Env-Length: 0\r\n\r\n")
    code, out, _ = decode_response(raw)
    assert code == 1 and b'"code": 6' in out and time.monotonic() - t0 < 2, "a 100 MB body must be refused at once"
    assert rss_kib(agent_pid(agent)) - before < 20 * 1024, "the agent read (or allocated for) the body"
    normal_add_within(sandbox, agent, pod)


def test_two_hundred_idle_connections_do_not_block_a_request(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, pod = running
    before = rss_kib(agent_pid(agent))
    holder = subprocess.Popen(["ip", "netns", "exec", sandbox, "/usr/bin/python3", "-c", CLIENT, agent.sock, "idle",
                               "200"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        normal_add_within(sandbox, agent, pod)
        assert rss_kib(agent_pid(agent)) - before < 60 * 1024, "200 idle clients cost over 60 MiB"
    finally:
        holder.kill()
        holder.wait()
    normal_add_within(sandbox, agent, pod)
    no_traceback(agent)


def test_a_slow_client_is_cut_off_at_the_request_deadline(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, pod = running
    slow = subprocess.Popen(["ip", "netns", "exec", sandbox, "/usr/bin/python3", "-c", CLIENT, agent.sock, "slow"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False)
    assert slow.stdin is not None and slow.stdout is not None
    slow.stdin.write(b"POST /cni/bridge HTTP/1.1\r\nX-Slow: " + b"a" * 100)
    slow.stdin.close()
    normal_add_within(sandbox, agent, pod)                   # while it trickles
    took = float(slow.stdout.read().decode().strip())
    slow.wait(30)
    assert took <= REQUEST_DEADLINE + 3, f"a slow client held its handler {took:.1f}s"
    normal_add_within(sandbox, agent, pod)
    no_traceback(agent)


def test_a_client_that_hangs_up_mid_request_leaves_no_traceback(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, pod = running
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "gone", "CNI_NETNS": pod, "CNI_IFNAME": "lo", "CNI_PATH": "/x"}
    full = encode_request("loopback", env, b'{"cniVersion":"1.0.0","name":"lo","type":"podnet-loopback"}')
    for cut in (10, len(full) // 2, len(full) - 1, len(full)):    # the last: gone before the answer
        client(sandbox, agent.sock, "hangup", full[:cut])
    normal_add_within(sandbox, agent, pod)
    no_traceback(agent)


def test_a_peer_that_is_not_root_cannot_reach_the_agent(sandbox: str, running: tuple[Agent, str]) -> None:
    agent, _ = running
    assert oct(os.stat(agent.sock).st_mode & 0o777) == "0o600"
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             f"try:\n    s.connect({agent.sock!r})\nexcept PermissionError:\n    sys.exit(3)\n"
             "sys.exit(0)")
    p = subprocess.run(["ip", "netns", "exec", sandbox, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "/usr/bin/python3", "-c", probe], capture_output=True, text=True)
    assert p.returncode == 3, p.stderr
