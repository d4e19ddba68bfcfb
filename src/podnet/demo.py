"""`podnet demo`: a virtual cluster (podnet.lab) — N node namespaces on one fabric, an agent
per node, ptp pods addressed by the cluster IPAM in etcd, cross-node routes by host-gw or
VXLAN — and every pod pair checked with ICMP and TCP.  `--single-node`: the earlier demo, one
node with pods on a bridge (eth0) and on a macvlan underlay (net1).

Everything lives in namespaces named with a per-run prefix and is removed on exit;
the machine's own interfaces, routes and firewall are never touched.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from . import conflists
from .net import probe

UNDERLAY_NET = "10.245.0.0/24"
UNDERLAY_HOST = "10.245.0.250"


def _sh(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True)


def run_single_node_demo(pods: int = 2, keep: bool = False) -> int:
    """One standalone node of the lab (an agent without cross-node routing), an underlay network
    behind it with another machine, and pods with eth0 on a bridge and net1 on a macvlan."""
    from .lab import Cluster
    lab = Cluster(1, datastore="none")
    ok = True
    results: dict[str, dict[str, Any]] = {}
    underlay_results: dict[str, dict[str, Any]] = {}
    try:
        lab.up()
        node, sock, ipam_dir = lab.nodes[0], lab.sock(0), os.path.join(lab.work, "ipam")
        bridge = conflists.bridge_conflist(f"demo-{lab.tag}", ["10.244.0.0/24"], bridge="pndemo0",
                                           agent_socket=sock, data_dir=ipam_dir)
        macvlan = {"cniVersion": "1.0.0", "name": f"demo-{lab.tag}-underlay", "plugins": [
            {"type": "podnet-macvlan", "master": "pnunder0", "mode": "bridge", "agentSocket": sock,
             "ipam": {"type": "podnet-host-local", "subnet": UNDERLAY_NET, "rangeStart": "10.245.0.10",
                      "rangeEnd": "10.245.0.200", "dataDir": ipam_dir}}]}
        underlay = lab.add_netns("underlay")        # another machine on the node's second network
        _sh("ip", "netns", "exec", node, "ip", "link", "add", "pnunder0", "type", "veth", "peer", "name", "uplink",
            "netns", underlay)
        _sh("ip", "netns", "exec", node, "ip", "link", "set", "pnunder0", "up")
        _sh("ip", "netns", "exec", underlay, "ip", "addr", "add", f"{UNDERLAY_HOST}/24", "dev", "uplink")
        _sh("ip", "netns", "exec", underlay, "ip", "link", "set", "uplink", "up")
        print(f"podnet demo: node netns {node}, agent on {sock}, bridge pndemo0, subnet 10.244.0.0/24;")
        print(f"  underlay {UNDERLAY_NET} on the node's pnunder0 (macvlan master), a machine there at {UNDERLAY_HOST}")
        names = [lab.add_netns(f"pod{i}") for i in range(pods)]
        for name in names:
            t0 = time.perf_counter()
            netns = f"/run/netns/{name}"
            res = lab.cni(0, "ADD", name, netns, bridge)
            net1 = lab.cni(0, "ADD", name, netns, macvlan, ifname="net1")
            assert res is not None and net1 is not None
            results[name], underlay_results[name] = res, net1
            print(f"  ADD {name:<22} eth0 {res['ips'][0]['address']:<16} net1 {net1['ips'][0]['address']:<16}"
                  f" ({(time.perf_counter() - t0) * 1000:.0f} ms for both)")
        print("reachability:")
        for src in names:
            for dst in ["10.244.0.1"] + [results[p]["ips"][0]["address"].split("/")[0] for p in names if p != src]:
                reached = probe.ping(f"/run/netns/{src}", dst)
                ok &= reached
                print(f"  {src:<22} -> {dst:<12} eth0 {'ok' if reached else 'FAILED'}")
            for dst in [UNDERLAY_HOST] + [underlay_results[p]["ips"][0]["address"].split("/")[0]
                                          for p in names if p != src]:
                reached = probe.ping(f"/run/netns/{src}", dst)
                ok &= reached
                print(f"  {src:<22} -> {dst:<12} net1 {'ok' if reached else 'FAILED'}")
        if keep:
            print(f"kept: namespaces pnlab-{lab.tag}-*; remove with: podnet demo --down")
            return 0 if ok else 1
        for name in names:
            lab.cni(0, "DEL", name, f"/run/netns/{name}", macvlan, ifname="net1", prev=underlay_results[name])
            lab.cni(0, "DEL", name, f"/run/netns/{name}", bridge, prev=results[name])
        left = [f for net in (str(bridge["name"]), str(macvlan["name"])) for f in os.listdir(os.path.join(ipam_dir, net))
                if f[0].isdigit() or ":" in f]
        print(f"after DEL: {len(left)} reservations left")
        ok &= not left
    except Exception as e:  # noqa: BLE001 - the report says what failed; cleanup still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        ok = False
    finally:
        if not keep:
            lab.down()
    print("podnet demo:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def _listen_in(netns_path: str, port: int) -> socket.socket:
    """A listening TCP socket created inside the pod's netns (it stays there)."""
    import socket

    from .net import netns as nsmod
    with nsmod.opened(netns_path) as fd, nsmod.entered(fd):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        # Never accepted: every probe's handshake stays queued here, so the backlog must exceed the
        # probes a pod receives.  listen(64) was why the 20-node demo failed every pair from its
        # 66th source pod on (each destination's queue full after 65 sources), same node or not.
        s.listen(4096)
    return s


@dataclass(frozen=True)
class DemoSpec:
    nodes: int = 3
    pods_per_node: int = 2
    backend: str = "vxlan"
    ipam_mode: str = "cluster"
    datastore: str = "etcd"            # etcd | kubernetes (a real control plane)
    keep: bool = False
    policy: bool = False               # the NetworkPolicy demo (kubernetes datastore)
    encryption: str = ""               # "wireguard": encrypted between nodes, checked by a fabric capture


def _describe_nodes(lab: Any) -> str:
    """etcd: `podnet node ls`; Kubernetes: each Node's podCIDRs and who wrote them (managedFields)."""
    if lab.datastore != "kubernetes" and lab.backend == "bgp":      # with n1's BGP sessions
        out = lab.on_node(lab.live[0], "node", "--etcd", lab.etcd_url, "ls", "--agent-socket", lab.sock(lab.live[0]))
        return f"nodes (podnet node ls on n{lab.live[0] + 1}, BGP sessions as its BIRD sees them):\n" + \
            "\n".join("  " + ln for ln in out.splitlines())
    if lab.datastore != "kubernetes":
        return "nodes (podnet node ls):\n" + "\n".join("  " + ln for ln in lab.podnet("node", "ls").splitlines())
    lines = ["nodes (Kubernetes Node objects: spec.podCIDRs, and the manager that set them):"]
    for i in lab.live:
        cidrs, writer = lab.kube.pod_cidrs(f"n{i + 1}")
        lines.append(f"  n{i + 1}  InternalIP 10.97.0.{i + 1}  podCIDRs {', '.join(cidrs) or '-'}  set by {writer or '?'}")
    return "\n".join(lines)


DEMO_PORT = 8080


def _raise_fd_limit() -> None:
    """A 1000-pod demo holds a listener per pod and probes thousands of pairs at once: the soft
    descriptor limit goes up to the hard one (no privilege needed for that)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _check_reachability(lab: Any, pod_pairs: bool = True, node_pairs: bool = True) -> tuple[int, int, int]:
    """ICMP and TCP :8080 over the planned pairs (lab.reach.plan), all in flight at once; prints
    what was checked, a matrix for a small cluster, each failed pair;
    (pod pairs failed, pod pairs checked, node pairs failed)."""
    import dataclasses

    from .lab import FABRIC_NET, reach
    pods = lab.pods
    live = list(lab.live)
    plan = reach.plan([p.node for p in pods], len(live))
    if not pod_pairs:
        plan = dataclasses.replace(plan, pairs=[], what=[w for w in plan.what if "node pair" in w])
    if not node_pairs:
        plan = dataclasses.replace(plan, node_pairs=[], what=[w for w in plan.what if "node pair" not in w])
    node_path = {i: f"/run/netns/{lab.nodes[n]}" for i, n in enumerate(live)}
    node_ip = {i: f"{FABRIC_NET}.{n + 1}" for i, n in enumerate(live)}
    t0 = time.perf_counter()
    cells = [(pods[s].netns, pods[d].ip) for s, d in plan.pairs]
    cells += [(node_path[a], node_ip[b]) for a, b in plan.node_pairs]
    verdicts = reach.check(cells, DEMO_PORT)
    took = time.perf_counter() - t0
    print("\nreachability (ICMP and TCP to :8080), probed in parallel: " + "; ".join(plan.what))
    bad = {(s, d) for s, d in plan.pairs if not (verdicts[(pods[s].netns, pods[d].ip)].icmp and
                                                  verdicts[(pods[s].netns, pods[d].ip)].tcp)}
    if len(pods) <= 12 and plan.pairs:
        for s, src in enumerate(pods):
            row = ["  -  " if s == d else ("FAIL " if (s, d) in bad else " ok  ") for d in range(len(pods))]
            print(f"  {src.ip:<14} " + "".join(row))
    for s, d in sorted(bad)[:200]:
        v = verdicts[(pods[s].netns, pods[d].ip)]
        print(f"  FAILED {pods[s].ip} (n{pods[s].node + 1}) -> {pods[d].ip} (n{pods[d].node + 1}): "
              f"icmp {'ok' if v.icmp else 'no'}, tcp {'ok' if v.tcp else 'no'}")
    if len(bad) > 200:
        print(f"  … and {len(bad) - 200} more failed pairs")
    node_bad = [(a, b) for a, b in plan.node_pairs if not (verdicts[(node_path[a], node_ip[b])].icmp and
                                                            verdicts[(node_path[a], node_ip[b])].tcp)]
    for a, b in node_bad:
        print(f"  FAILED node n{live[a] + 1} -> node n{live[b] + 1} ({node_ip[b]})")
    print(f"  ({len(plan.pairs)} pod pairs and {len(plan.node_pairs)} node pairs checked in {took:.1f}s; "
          f"node pairs {len(plan.node_pairs) - len(node_bad)}/{len(plan.node_pairs)} ok)")
    return len(bad), len(plan.pairs), len(node_bad)


MARKER = b"PODNET-PLAINTEXT-MARKER-7f3c"
EXTERNAL_PORT = 8081


def _check_external(lab: Any) -> bool:
    """Backend bgp: the top-of-rack router learned every node's block, and the external host
    behind it reaches every pod and is reached by every pod — seeing each pod's own address
    (no NAT: the network routes the pods' CIDR)."""
    from .lab import EXTERNAL_HOST, TOR_ADDR, reach
    blocks = sorted({str(ipaddress.ip_network(f"{p.ip}/{lab.block_prefix}", strict=False)) for p in lab.pods})
    deadline = time.monotonic() + 30                  # the ToR hears of the last block a moment after the nodes
    while (missing := [b for b in blocks if b not in lab.tor_routes()]) and time.monotonic() < deadline:
        time.sleep(0.05)
    print(f"\ntop-of-rack router {TOR_ADDR} (BIRD, AS 64600) learned {len(blocks) - len(missing)}/{len(blocks)} "
          f"pod blocks by BGP" + (f"; MISSING {', '.join(missing)}" if missing else ""))
    ext_path = f"/run/netns/{lab.external}"
    listener = _listen_in(ext_path, EXTERNAL_PORT)
    try:
        inbound = reach.check([(ext_path, p.ip) for p in lab.pods], DEMO_PORT)
        outbound = reach.check([(p.netns, EXTERNAL_HOST) for p in lab.pods], EXTERNAL_PORT)
        listener.setblocking(False)
        seen: set[str] = set()
        while True:
            try:
                conn, peer = listener.accept()
            except BlockingIOError:
                break
            seen.add(peer[0])
            conn.close()
    finally:
        listener.close()
    inbound_ok = sum(1 for v in inbound.values() if v.icmp and v.tcp)
    outbound_ok = sum(1 for v in outbound.values() if v.icmp and v.tcp)
    own = sum(1 for p in lab.pods if p.ip in seen)
    others = sorted(seen - {p.ip for p in lab.pods})
    print(f"external host {EXTERNAL_HOST} -> pods: {inbound_ok}/{len(lab.pods)} (ICMP and TCP :{DEMO_PORT}); "
          f"pods -> external host: {outbound_ok}/{len(lab.pods)}; source addresses the external host saw: "
          f"{own}/{len(lab.pods)} the pods' own (no NAT)" + (f", and others (NAT?): {others}" if others else ""))
    return not missing and inbound_ok == outbound_ok == own == len(lab.pods)


def _send_marker(lab: Any) -> bool:
    """A known string from a pod on the first node to a pod on the last, over UDP and TCP."""
    from .lab.capture import send_marker
    src = next(p for p in lab.pods if p.node == lab.live[0])
    dst = next(p for p in lab.pods if p.node == lab.live[-1])
    udp, tcp = send_marker(src.netns, dst.netns, dst.ip, MARKER)
    print(f"\nmarker {MARKER.decode()!r} sent {src.ip} (n{src.node + 1}) -> {dst.ip} (n{dst.node + 1}): "
          f"UDP {'delivered' if udp else 'LOST'}, TCP {'delivered' if tcp else 'LOST'}")
    return udp and tcp


def _judge_capture(lab: Any, cap: Any) -> bool:
    """What crossed the fabric during the checks: only WireGuard between nodes, no marker, no pod
    address in any IP header."""
    from .lab import CLUSTER_CIDR, FABRIC_NET
    from .lab.capture import judge
    v = judge(cap, [f"{FABRIC_NET}.{i + 1}" for i in lab.live], [CLUSTER_CIDR], MARKER, 51820,
              control_ports=(179,) if lab.backend == "bgp" else ())
    print(v.describe())
    print(f"no plaintext crossed the fabric: {'yes' if v.clean else 'NO'}")
    return v.clean


def run_cluster_demo(spec: DemoSpec) -> int:
    from .lab import ETCD_ADDR, Cluster
    from .lab.capture import capturing
    _raise_fd_limit()
    t0 = time.perf_counter()
    nodes, pods_per_node, keep = spec.nodes, spec.pods_per_node, spec.keep
    lab = Cluster(nodes, spec.backend, ipam_mode=spec.ipam_mode, datastore=spec.datastore, encryption=spec.encryption)
    ok = True
    listeners = []
    try:
        lab.up()
        t_up = time.perf_counter() - t0
        store = (f"Kubernetes {lab.cp.server} (kube-apiserver ready in {lab.timings['apiserver_ready']:.1f}s)"
                 if spec.datastore == "kubernetes" else f"etcd {lab.etcd_url}")
        ipam = "podCIDRs + host-local" if spec.datastore == "kubernetes" else f"{spec.ipam_mode} IPAM"
        enc = f", encrypted ({spec.encryption})" if spec.encryption else ""
        print(f"podnet demo: {nodes} nodes on fabric {lab.fab} ({spec.backend}{enc}, {ipam}), {store}, "
              f"agents ready (conflists written) in {t_up:.1f}s")
        t1 = time.perf_counter()
        for i in range(nodes):
            for _ in range(pods_per_node):
                lab.add_pod(i)
        t_pods = time.perf_counter() - t1
        conv = lab.wait_converged()
        print(f"{len(lab.pods)} pods in {t_pods:.1f}s; routes converged {conv * 1000:.0f} ms after the last pod")
        print(f"\n  {'NODE':<6} {'UNDERLAY':<12} {'POD':<24} {'ADDRESS':<14} BLOCK")
        shown = lab.pods if len(lab.pods) <= 60 else [p for p in lab.pods if p.name.endswith("p0")]
        for p in shown:
            block = ipaddress.ip_network(f"{p.ip}/{lab.block_prefix}", strict=False)
            print(f"  n{p.node + 1:<5} 10.97.0.{p.node + 1:<4} {p.name:<24} {p.ip:<14} {block}")
        if len(shown) < len(lab.pods):
            print(f"  (the first pod of each node shown; {len(lab.pods)} pods in all)")
        print("\n" + _describe_nodes(lab))
        for p in lab.pods:
            listeners.append(_listen_in(p.netns, DEMO_PORT))
        for node in lab.live:
            listeners.append(_listen_in(f"/run/netns/{lab.nodes[node]}", DEMO_PORT))
        with contextlib.ExitStack() as watching:
            # with encryption, only pod traffic in the capture: the nodes' own probes of each other
            # (underlay to underlay, never encrypted) run after it
            cap = watching.enter_context(capturing(f"/run/netns/{lab.fab}")) if spec.encryption else None
            failures, pairs, node_failures = _check_reachability(lab, node_pairs=cap is None)
            sealed = _send_marker(lab) if cap is not None else True
        if cap is not None:
            node_failures = _check_reachability(lab, pod_pairs=False)[2]
        if spec.backend == "bgp":     # no NAT: only hosts whose network routes the pods' CIDR answer (below)
            out = True
            print(f"\n{pairs - failures}/{pairs} pod pairs reachable")
        else:
            out = probe.ping(lab.pods[0].netns, ETCD_ADDR)
            print(f"\n{pairs - failures}/{pairs} pod pairs reachable; pod -> fabric host {ETCD_ADDR} (masqueraded): "
                  f"{'ok' if out else 'FAILED'}")
        if cap is not None:
            sealed = sealed and _judge_capture(lab, cap)
        native = _check_external(lab) if spec.backend == "bgp" else True
        ok = failures == 0 and node_failures == 0 and out and sealed and native
        if keep:
            print(f"kept: namespaces pnlab-{lab.tag}-*; remove with: podnet demo --down")
            return 0 if ok else 1
    except Exception as e:  # noqa: BLE001 - the report says what failed; teardown still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        ok = False
    finally:
        for s in listeners:
            s.close()
        if not keep:
            lab.down()
    print(f"podnet demo: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t0:.1f}s in all)")
    return 0 if ok else 1


def run_demo(spec: DemoSpec, single_node: bool = False) -> int:
    """SIGTERM or Ctrl-C tear the lab down like a normal exit (unless --keep)."""
    from .lab import ends_cleanly_on_signals
    with ends_cleanly_on_signals():
        if spec.policy:
            from .policy_demo import run_policy_demo
            return run_policy_demo(spec.nodes, spec.backend, spec.keep)
        if single_node:
            return run_single_node_demo(spec.pods_per_node, spec.keep)
        return run_cluster_demo(spec)
