"""The agent: malformed requests, refusal across namespaces, restart and kill -9 mid-ADD."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from podnet.net import probe
from tests.helpers.cni import links_in, netns_add, netns_del, run_plugin, unique
from tests.helpers.state import bridge_conf, host_veths, nft_ruleset, reservations


def raw_request(sandbox: str, sock: str, payload: bytes) -> bytes:
    """Send raw bytes to the agent from inside its netns (a thread that entered it)."""
    from podnet.net import netns
    with netns.opened(f"/run/netns/{sandbox}") as fd, netns.entered(fd):
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(sock)
        s.sendall(payload)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        s.close()
    return b"".join(chunks)


def answer(raw: bytes) -> tuple[int, dict]:  # type: ignore[type-arg]
    from podnet.launcher import decode_response
    code, out, _ = decode_response(raw)
    return code, json.loads(out)


def test_malformed_and_oversized_requests_get_cni_errors(sandbox, agent_factory):
    agent = agent_factory(sandbox)
    from podnet.launcher import encode_request
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "a", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0"}
    code, err = answer(raw_request(sandbox, agent.sock, encode_request("bridge", env, b"{nope")))
    assert code == 1 and err["code"] == 6
    code, err = answer(raw_request(sandbox, agent.sock,
                                   b"POST /cni/bridge HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"))
    assert code == 1 and err["code"] == 6 and "cap" in err["msg"]
    code, err = answer(raw_request(sandbox, agent.sock, encode_request("bridge", {"CNI_COMMAND": "ADD"}, b"{}")))
    assert code == 1 and err["code"] == 4 and "CNI_NETNS" in err["msg"]
    assert b"200 OK" in raw_request(sandbox, agent.sock, b"GET /healthz HTTP/1.1\r\n\r\n")
    metrics = raw_request(sandbox, agent.sock, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert b'podnet_cni_errors_total{code="4",command="ADD",plugin="bridge"} 1.0' in metrics
    assert b'podnet_cni_request_seconds_count{command="ADD",plugin="bridge"}' in metrics
    assert oct(os.stat(agent.sock).st_mode & 0o777) == "0o600"


def test_request_from_another_netns_is_refused_and_launcher_falls_back(bin_dir, sandbox, make_pod, tmp_path,
                                                                        agent_factory):
    """A launcher in a second sandbox reaches the agent's socket file but not its netns."""
    agent = agent_factory(sandbox)
    pod = make_pod()
    conf = bridge_conf(tmp_path, {"agentSocket": agent.sock})
    other = unique("pnt-o-")
    netns_add(other)
    try:
        r = run_plugin(f"{bin_dir}/podnet-bridge", "ADD", conf, netns=pod, sandbox=other)
        assert r.rc == 0, r.stdout
        assert "refused a request" in Path(agent.log).read_text()
        assert host_veths(other) and not host_veths(sandbox)  # the work happened where the launcher ran
        d = run_plugin(f"{bin_dir}/podnet-bridge", "DEL", dict(conf, prevResult=r.out), netns=pod, sandbox=other)
        assert d.rc == 0 and not host_veths(other)
    finally:
        netns_del(other)


def test_agent_restart_keeps_pods_and_old_pods_delete(bin_dir, sandbox, make_pod, tmp_path, agent_factory):
    a1 = agent_factory(sandbox, "a1")
    conf = bridge_conf(tmp_path, {"agentSocket": a1.sock})
    pods = [make_pod() for _ in range(3)]
    res = [run_plugin(f"{bin_dir}/podnet-bridge", "ADD", conf, netns=p, container_id=f"r{i}", sandbox=sandbox).out
           for i, p in enumerate(pods)]
    a1.stop()
    assert all(probe.ping(p, "10.77.0.1") for p in pods), "pods lost connectivity when the agent stopped"
    a2 = agent_factory(sandbox, "a1")  # same socket path
    assert a2.sock == a1.sock
    for i, p in enumerate(pods):
        d = run_plugin(f"{bin_dir}/podnet-bridge", "DEL", dict(conf, prevResult=res[i]), netns=p,
                       container_id=f"r{i}", sandbox=sandbox)
        assert d.rc == 0
    assert reservations(tmp_path) == [] and host_veths(sandbox) == []


def test_kill_9_mid_adds_then_del_leaves_nothing_and_no_duplicates(bin_dir, sandbox, make_pod, tmp_path,
                                                                   agent_factory):
    agent = agent_factory(sandbox)
    conf = bridge_conf(tmp_path, {"agentSocket": agent.sock})
    pods = [make_pod() for _ in range(50)]

    def add(i: int):
        return run_plugin(f"{bin_dir}/podnet-bridge", "ADD", conf, netns=pods[i], container_id=f"k{i}",
                          sandbox=sandbox)

    with ThreadPoolExecutor(16) as ex:
        futs = [ex.submit(add, i) for i in range(50)]
        deadline = time.monotonic() + 30
        while sum(f.done() for f in futs) < 4:              # the agent is busy serving the burst
            assert time.monotonic() < deadline, "no ADD finished"
            time.sleep(0.005)
        agent.proc.send_signal(signal.SIGKILL)
        results = [f.result() for f in futs]
    ok = [r.out["ips"][0]["address"] for r in results if r.rc == 0]
    assert len(ok) == len(set(ok)), "an address was handed out twice"
    failed = [r.out["code"] for r in results if r.rc != 0]
    assert all(c == 11 for c in failed), failed
    agent_factory(sandbox, "again")  # a restarted agent (new socket; DEL works with or without it)
    for i, p in enumerate(pods):
        r = run_plugin(f"{bin_dir}/podnet-bridge", "DEL", conf, netns=p, container_id=f"k{i}", sandbox=sandbox)
        assert r.rc == 0, r.stdout
    assert reservations(tmp_path) == []
    assert host_veths(sandbox) == []
    assert not re.search(r"10\.77\.0\.\d+ comment", nft_ruleset(sandbox))
    assert [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("veth")] == []
