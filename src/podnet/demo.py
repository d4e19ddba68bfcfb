"""`podnet demo`: a virtual cluster (podnet.lab) — N node namespaces on one fabric, an agent
per node, ptp pods addressed by the cluster IPAM in etcd, cross-node routes by host-gw or
VXLAN — and every pod pair checked with ICMP and TCP.  `--single-node`: the earlier demo, one
node with pods on a bridge (eth0) and on a macvlan underlay (net1).

Everything lives in namespaces named with a per-run prefix and is removed on exit;
the machine's own interfaces, routes and firewall are never touched.
"""
from __future__ import annotations

import json
import socket
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

from . import install
from .net import probe

UNDERLAY_NET = "10.245.0.0/24"
UNDERLAY_HOST = "10.245.0.250"


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True)


def _cni(bin_dir: str, node: str, command: str, conf: dict, cid: str, netns: str,  # type: ignore[type-arg]
         ifname: str = "eth0") -> dict | None:  # type: ignore[type-arg]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": cid,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": bin_dir}
    p = subprocess.run(["ip", "netns", "exec", node, f"{bin_dir}/{conf['type']}"], input=json.dumps(conf).encode(),
                       env=env, capture_output=True)
    if p.returncode:
        raise RuntimeError(f"{command} {cid}: {p.stdout.decode().strip()} {p.stderr.decode().strip()}")
    return json.loads(p.stdout) if p.stdout.strip() else None


def run_single_node_demo(pods: int = 2, keep: bool = False) -> int:
    tag = uuid.uuid4().hex[:6]
    node = f"pndemo-{tag}-node"
    pod_names = [f"pndemo-{tag}-pod{i}" for i in range(pods)]
    work = tempfile.mkdtemp(prefix=f"pndemo-{tag}-")
    sock = os.path.join(work, "agent.sock")
    bin_dir = os.path.join(work, "bin")
    install.write_launchers(bin_dir)
    conf = install.bridge_conflist(f"demo-{tag}", ["10.244.0.0/24"], bridge="pndemo0", agent_socket=sock,
                                   data_dir=os.path.join(work, "ipam"))["plugins"][0]
    conf.update(cniVersion="1.0.0", name=f"demo-{tag}")
    underlay = f"pndemo-{tag}-underlay"   # another machine on the node's second network
    mvconf = {"cniVersion": "1.0.0", "name": f"demo-{tag}-underlay", "type": "podnet-macvlan", "master": "pnunder0",
              "mode": "bridge", "agentSocket": sock,
              "ipam": {"type": "podnet-host-local", "subnet": UNDERLAY_NET, "rangeStart": "10.245.0.10",
                       "rangeEnd": "10.245.0.200", "dataDir": os.path.join(work, "ipam")}}
    agent = None
    results: dict[str, dict] = {}  # type: ignore[type-arg]
    underlay_ips: dict[str, dict] = {}  # type: ignore[type-arg]
    ok = True
    try:
        _sh("ip", "netns", "add", node)
        _sh("ip", "netns", "exec", node, "ip", "link", "set", "lo", "up")
        _sh("ip", "netns", "add", underlay)
        _sh("ip", "netns", "exec", node, "ip", "link", "add", "pnunder0", "type", "veth", "peer", "name", "uplink",
            "netns", underlay)
        _sh("ip", "netns", "exec", node, "ip", "link", "set", "pnunder0", "up")
        _sh("ip", "netns", "exec", underlay, "ip", "addr", "add", f"{UNDERLAY_HOST}/24", "dev", "uplink")
        _sh("ip", "netns", "exec", underlay, "ip", "link", "set", "uplink", "up")
        agent = subprocess.Popen(["ip", "netns", "exec", node, sys.executable, "-m", "podnet.cli", "agent",
                                  "--socket", sock, "--log-file", os.path.join(work, "agent.log")])
        deadline = time.monotonic() + 30
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"podnet demo: node netns {node}, agent on {sock}, bridge pndemo0, subnet 10.244.0.0/24;")
        print(f"  underlay {UNDERLAY_NET} on the node's pnunder0 (macvlan master), a machine there at {UNDERLAY_HOST}")
        for i, name in enumerate(pod_names):
            _sh("ip", "netns", "add", name)
            t0 = time.perf_counter()
            res = _cni(bin_dir, node, "ADD", conf, f"demo{i}", f"/run/netns/{name}")
            assert res is not None
            results[name] = res
            net1 = _cni(bin_dir, node, "ADD", mvconf, f"demo{i}", f"/run/netns/{name}", "net1")
            assert net1 is not None
            underlay_ips[name] = net1
            print(f"  ADD {name:<22} eth0 {res['ips'][0]['address']:<16} net1 {net1['ips'][0]['address']:<16}"
                  f" ({(time.perf_counter() - t0) * 1000:.0f} ms for both)")
        gw = "10.244.0.1"
        print("reachability:")
        for src in pod_names:
            for dst in [gw] + [results[p]["ips"][0]["address"].split("/")[0] for p in pod_names if p != src]:
                reached = probe.ping(f"/run/netns/{src}", dst)
                ok &= reached
                print(f"  {src:<22} -> {dst:<12} eth0 {'ok' if reached else 'FAILED'}")
            for dst in [UNDERLAY_HOST] + [underlay_ips[p]["ips"][0]["address"].split("/")[0]
                                          for p in pod_names if p != src]:
                reached = probe.ping(f"/run/netns/{src}", dst)
                ok &= reached
                print(f"  {src:<22} -> {dst:<12} net1 {'ok' if reached else 'FAILED'}")
        if keep:
            print(f"kept: netns {node} {underlay} {' '.join(pod_names)}; remove with: ip netns del <name>")
            return 0 if ok else 1
        for i, name in enumerate(pod_names):
            _cni(bin_dir, node, "DEL", dict(mvconf, prevResult=underlay_ips[name]), f"demo{i}",
                 f"/run/netns/{name}", "net1")
            _cni(bin_dir, node, "DEL", dict(conf, prevResult=results[name]), f"demo{i}", f"/run/netns/{name}")
        left = [f for net in (conf["name"], mvconf["name"]) for f in os.listdir(os.path.join(work, "ipam", net))
                if f[0].isdigit() or ":" in f]
        print(f"after DEL: {len(left)} reservations left")
        ok &= not left
    except Exception as e:  # the report says what failed; cleanup still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        ok = False
    finally:
        if not keep:
            if agent is not None:
                agent.terminate()
                agent.wait(10)
            for name in pod_names + [node, underlay]:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    print("podnet demo:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def _listen_in(netns_path: str, port: int) -> "socket.socket":
    """A listening TCP socket created inside the pod's netns (it stays there)."""
    import socket
    from .net import netns as nsmod
    with nsmod.opened(netns_path) as fd, nsmod.entered(fd):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(64)
    return s


def run_cluster_demo(nodes: int = 3, pods_per_node: int = 2, backend: str = "vxlan", keep: bool = False,
                     ipam_mode: str = "cluster") -> int:
    import ipaddress
    from .lab import ETCD_ADDR, Cluster
    t0 = time.perf_counter()
    lab = Cluster(nodes, backend, ipam_mode=ipam_mode)
    ok = True
    listeners = []
    try:
        lab.up()
        t_up = time.perf_counter() - t0
        print(f"podnet demo: {nodes} nodes on fabric {lab.fab} ({backend}, {ipam_mode} IPAM), etcd {lab.etcd_url}, "
              f"agents ready (conflists written) in {t_up:.1f}s")
        t1 = time.perf_counter()
        for i in range(nodes):
            for _ in range(pods_per_node):
                lab.add_pod(i)
        t_pods = time.perf_counter() - t1
        conv = lab.wait_converged()
        print(f"{len(lab.pods)} pods in {t_pods:.1f}s; routes converged {conv * 1000:.0f} ms after the last pod")
        print(f"\n  {'NODE':<6} {'UNDERLAY':<12} {'POD':<24} {'ADDRESS':<14} BLOCK")
        for p in lab.pods:
            block = ipaddress.ip_network(f"{p.ip}/{lab.block_prefix}", strict=False)
            print(f"  n{p.node + 1:<5} 10.97.0.{p.node + 1:<4} {p.name:<24} {p.ip:<14} {block}")
        print("\nnodes (podnet node ls):\n" + "\n".join("  " + ln for ln in lab.podnet("node", "ls").splitlines()))
        for p in lab.pods:
            listeners.append(_listen_in(p.netns, 8080))
        print("\nreachability (ICMP and TCP to :8080), every pod to every other pod:")
        pairs = failures = 0
        t2 = time.perf_counter()
        matrix = len(lab.pods) <= 12
        for src in lab.pods:
            row = []
            for dst in lab.pods:
                if src is dst:
                    row.append("  -  ")
                    continue
                good = probe.ping(src.netns, dst.ip) and probe.tcp_connect(src.netns, dst.ip, 8080)
                pairs += 1
                failures += 0 if good else 1
                row.append(" ok  " if good else "FAIL ")
                if not good and not matrix:
                    print(f"  FAILED {src.ip} -> {dst.ip}")
            if matrix:
                print(f"  {src.ip:<14} " + "".join(row))
        print(f"  ({pairs} pairs checked in {time.perf_counter() - t2:.1f}s)")
        out = probe.ping(lab.pods[0].netns, ETCD_ADDR)
        print(f"\n{pairs - failures}/{pairs} pod pairs reachable; pod -> fabric host {ETCD_ADDR}: "
              f"{'ok' if out else 'FAILED'}")
        ok = failures == 0 and out
        if keep:
            print(f"kept: namespaces pnlab-{lab.tag}-*; remove with: podnet demo --down")
            return 0 if ok else 1
    except Exception as e:  # the report says what failed; teardown still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        ok = False
    finally:
        for s in listeners:
            s.close()
        if not keep:
            lab.down()
    print(f"podnet demo: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t0:.1f}s in all)")
    return 0 if ok else 1


def run_demo(pods: int = 2, keep: bool = False, nodes: int = 3, backend: str = "vxlan",
             single_node: bool = False, ipam_mode: str = "cluster") -> int:
    if single_node:
        return run_single_node_demo(pods, keep)
    return run_cluster_demo(nodes, pods, backend, keep, ipam_mode)
