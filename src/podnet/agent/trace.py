"""This node's part of a packet's path, for `podnet trace` (GET /trace/hop).

The agent answers only for its own node, from the kernel's own decisions: route lookups as the
kernel makes them (`ip route get`, with the arriving interface for a forwarding decision) in the
node's netns and in the pod's, the VXLAN neighbour and forwarding entries the next hop needs,
the node's masquerade table for traffic leaving the cluster, the pod's address, and — with
NetworkPolicy on — the verdict the compiled policies give the connection.  Each node's agent
answering for its own hops is what lets the CLI on any node follow a path across nodes.

Nothing here changes state: only lookups and dumps.

  stage=origin   the packet leaves a pod of this node (src), or the node itself (src = its address)
  stage=arrive   the packet arrives from the underlay for dst (a pod here, or a hostPort of this node)
  hostport=1     dst:port is a hostPort: the way goes through portmap's DNAT to a pod of dst's node
The answer: {"node", "hops": [{what, ok, fix}], "next": {"kind": node|deliver|external|broken, …}}.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from ..net import addr, link, masq, netns
from ..net.rtnl import Link, Rtnl, open_rtnl
from .routing.vxlan import VXLAN_DEV
from .routing.wgdevice import WG_DEV

IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass
class Hop:
    what: str
    ok: bool = True
    fix: str = ""


@dataclass
class NodeView:
    """What the trace needs of the agent: its name, address, cluster CIDRs, policy engine."""
    name: str
    addr: str
    cidrs: list[Any]
    policy: Any = None            # NodePolicy, when NetworkPolicy is on
    wireguard: Any = None         # with --encryption wireguard: the backend's status() (peers, refusals)
    backend: str = "host-gw"      # what put a plain route via a next hop there (host-gw, bgp)
    no_nat: list[Any] = field(default_factory=list)   # pools whose pods leave with their own address


def _is_pod_veth(host: Rtnl, lk: Link | None, view: NodeView) -> bool:
    """A pod's host veth — not the node's own wire to the underlay (a veth too in the lab), the
    link that holds the node's address."""
    if lk is None or lk.kind != "veth":
        return False
    return not any(str(a.ip) == view.addr for a in host.addrs(lk.index))


def _local_pod(host: Rtnl, ip: IPAddr, view: NodeView) -> tuple[Link | None, str | None]:
    """The host veth the node routes `ip` to, and the pod netns behind it (None, None: not a
    pod of this node)."""
    r = host.lookup(ip)
    if r.kind != "unicast" or not r.oif or r.gw is not None:
        return None, None
    lk = host.link_by_index(r.oif)
    if not _is_pod_veth(host, lk, view):
        return None, None
    assert lk is not None
    return lk, link.peer_netns_path(host, lk)


def _in_cluster(view: NodeView, ip: IPAddr) -> bool:
    return any(ip in c for c in view.cidrs if c.version == ip.version)


def _policy(view: NodeView, src: IPAddr, dst: IPAddr, port: int, proto: str, direction: str) -> Iterator[Hop]:
    """The NetworkPolicy verdict for the connection in one direction, from the compiled state."""
    if view.policy is None or proto not in ("TCP", "UDP", "SCTP"):
        return
    out = view.policy.engine.explain(str(src), str(dst), port, proto)
    d = out.get(direction, {})
    if not d.get("isolated"):
        return
    target = out["src"] if direction == "egress" else out["dst"]
    if d.get("allowed"):
        yield Hop(f"NetworkPolicy {direction} of {target}: allowed by {', '.join(d.get('allowed_by', []))}")
    else:
        yield Hop(f"dropped: NetworkPolicy {', '.join(d.get('policies', []))} ({direction}, pod {target})", False,
                  f"no rule of {', '.join(d.get('policies', []))} allows {proto} {port} "
                  f"{'to ' + str(dst) if direction == 'egress' else 'from ' + str(src)}: `podnet policy explain`")


def origin(view: NodeView, src: IPAddr, dst: IPAddr, proto: str, port: int, hostport: bool = False) -> dict[str, Any]:
    hops: list[Hop] = []
    with open_rtnl() as host:
        iif = 0
        if str(src) != view.addr:
            veth, path = _local_pod(host, src, view)
            if veth is None or path is None:
                hops.append(Hop(f"node {view.name} has no route to its pod {src} (no host veth route)", False,
                                "the pod's interface or its host route is gone: CNI CHECK reports it; "
                                "recreate the pod"))
                return _answer(view, hops, {"kind": "broken"})
            with netns.opened(path) as fd, open_rtnl(fd) as pod:
                r = pod.lookup(dst, src=src)
                if r.kind != "unicast":
                    hops.append(Hop(f"pod {src} ({os.path.basename(path)}) has no route to {dst}: "
                                    f"{r.error or r.kind}", False,
                                    "the pod's routes (default via its gateway) are missing: CNI CHECK reports it"))
                    return _answer(view, hops, {"kind": "broken"})
                dev = pod.link_by_index(r.oif)
            hops.append(Hop(f"pod {src} {dev.name if dev else '?'}"
                            f"{' via ' + str(r.gw) if r.gw else ''} → veth {veth.name} (node {view.name})"))
            hops.extend(_policy(view, src, dst, port, proto, "egress"))
            if not hops[-1].ok:
                return _answer(view, hops, {"kind": "broken"})
            iif = veth.index
        return _forward(view, host, src, dst, proto, port, iif, hops, hostport=hostport)


def _forward(view: NodeView, host: Rtnl, src: IPAddr, dst: IPAddr, proto: str, port: int, iif: int,
             hops: list[Hop], expect_local: bool = False, hostport: bool = False) -> dict[str, Any]:
    """The node's routing decision for the packet and what the chosen way needs.  expect_local:
    dst is a pod of this node (the CLI knows its block is here); hostport: dst:port is a hostPort
    of this node, so the packet must be DNATed to a pod here."""
    r = host.lookup(dst, src=src if iif else None, iif=iif)
    if r.kind == "local" and hostport:
        return _host_port(view, host, src, dst, proto, port, hops)
    if expect_local and r.kind != "local":
        dev = host.link_by_index(r.oif) if r.kind == "unicast" else None
        if r.gw is not None or not _is_pod_veth(host, dev, view):
            how = f"{r.kind} via {r.gw or '-'} dev {dev.name if dev else '-'}" if r.kind == "unicast" else r.error or r.kind
            hops.append(Hop(f"node {view.name} has no route to its pod {dst} (the kernel would do: {how})", False,
                            "the pod's host route (made by its CNI ADD) is gone: CNI CHECK reports it; "
                            "recreate the pod"))
            return _answer(view, hops, {"kind": "broken"})
    if r.kind == "local":
        hops.append(Hop(f"node {view.name} itself ({dst})"))
        return _answer(view, hops, {"kind": "deliver"})
    if r.kind != "unicast":
        refused = view.wireguard().get("refused", {}) if view.wireguard is not None else {}
        if refused and r.kind == "unreachable":
            hops.append(Hop(f"node {view.name} routes {dst} as unreachable: {'; '.join(refused.values())}", False,
                            "turn --encryption wireguard on on every node (or on none)"))
            return _answer(view, hops, {"kind": "broken"})
        hops.append(Hop(f"node {view.name} has no route to {dst}: {r.error or r.kind}", False,
                        "the route to the remote node's block is missing: is that node's agent up "
                        "(`podnet node ls`), and did this node's agent program it (its log)?"))
        return _answer(view, hops, {"kind": "broken"})
    dev = host.link_by_index(r.oif)
    name = dev.name if dev else f"#{r.oif}"
    if name == WG_DEV and view.wireguard is not None:
        return _wireguard(view, dst, hops)
    if r.gw is None and _is_pod_veth(host, dev, view):
        _, path = _local_pod(host, dst, view)
        return _deliver(view, host, src, dst, proto, port, name, path, hops)
    if name == VXLAN_DEV and r.gw is not None:
        mac = host.neighbours(r.oif).get(str(r.gw))
        if mac is None:
            hops.append(Hop(f"route {dst} via {r.gw} dev {name}: no neighbour entry for {r.gw}", False,
                            f"{name} needs a permanent neighbour entry for the remote VTEP {r.gw}: "
                            f"the agent restores it on its next pass (`ip neigh show dev {name}`)"))
            return _answer(view, hops, {"kind": "broken"})
        vtep = next((d for m, d in host.fdb_entries(r.oif) if m == mac), None)
        if vtep is None:
            hops.append(Hop(f"route {dst} via {r.gw} dev {name}: no VXLAN FDB entry for {mac}", False,
                            f"{name} needs an FDB entry {mac} → the remote node's address: the agent "
                            f"restores it on its next pass (`bridge fdb show dev {name}`)"))
            return _answer(view, hops, {"kind": "broken"})
        hops.append(Hop(f"route {dst} via {r.gw} dev {name} (vxlan, VTEP {mac} at {vtep})"))
        return _answer(view, hops, {"kind": "node", "addr": vtep})
    if _in_cluster(view, dst) and host.matched_prefix(dst) == 0:
        hops.append(Hop(f"node {view.name} has no route to {dst}'s block: only its default route "
                        f"(via {r.gw or '-'} dev {name}) covers it", False,
                        "the route to the remote node's block is missing: is that node registered and its "
                        "agent up (`podnet node ls`), and did this node's agent program it (its log)?"))
        return _answer(view, hops, {"kind": "broken"})
    if _in_cluster(view, dst):
        hops.append(Hop(f"route {dst} via {r.gw} dev {name} ({view.backend})"))
        return _answer(view, hops, {"kind": "node", "addr": str(r.gw) if r.gw else str(dst)})
    # leaving the cluster: the node's masquerade must apply (unless the pool is routed natively)
    native = next((c for c in view.no_nat if src.version == c.version and src in c), None)
    if iif and native is not None:
        hops.append(Hop(f"route {dst} via {r.gw or 'link'} dev {name}, with the pod's own address ({native} is "
                        "routed by the network: no-nat-cidr)"))
    elif iif and _in_cluster(view, src):
        if not masq.cluster_masquerade_present(src.version):
            hops.append(Hop(f"route {dst} via {r.gw or 'link'} dev {name}: no masquerade for pod traffic leaving "
                            f"the cluster (table {masq.NODE_TABLE})", False,
                            "the agent writes the table at start: restart it, or check `nft list table "
                            f"{masq.NODE_TABLE}`"))
            return _answer(view, hops, {"kind": "broken"})
        hops.append(Hop(f"route {dst} via {r.gw or 'link'} dev {name}, masqueraded as node {view.name}"))
    else:
        hops.append(Hop(f"route {dst} via {r.gw or 'link'} dev {name}"))
    return _answer(view, hops, {"kind": "external", "addr": str(r.gw or dst)})


def _wireguard(view: NodeView, dst: IPAddr, hops: list[Hop]) -> dict[str, Any]:
    """Into podnet.wg: the peer whose AllowedIPs hold dst carries it to its node, encrypted."""
    st = view.wireguard()
    if st.get("error"):
        hops.append(Hop(f"route {dst} dev {WG_DEV}: the WireGuard device does not answer: {st['error']}", False,
                        "the agent restarts wireguard-go on its next pass; see its log"))
        return _answer(view, hops, {"kind": "broken"})
    peer = next((p for p in st["peers"] if any(dst in ipaddress.ip_network(a) for a in p["allowed_ips"])), None)
    if peer is None:
        hops.append(Hop(f"route {dst} dev {WG_DEV}: no WireGuard peer's AllowedIPs hold {dst}", False,
                        "the agent sets the peers from the node records on its next pass: is the owning node "
                        "live and encrypting (`podnet node ls`)?"))
        return _answer(view, hops, {"kind": "broken"})
    age = peer["handshake_age"]
    seen = "no handshake yet" if age is None else f"handshake {age:.0f} s ago"
    hops.append(Hop(f"route {dst} dev {WG_DEV}: encrypted to peer {peer['node'] or peer['public_key'][:8]} at "
                    f"{peer['endpoint']} (WireGuard, {seen})"))
    return _answer(view, hops, {"kind": "node", "addr": peer["endpoint"].rsplit(":", 1)[0].strip("[]")})


def _host_port(view: NodeView, host: Rtnl, src: IPAddr, dst: IPAddr, proto: str, port: int,
               hops: list[Hop]) -> dict[str, Any]:
    """A packet for one of this node's addresses and a hostPort: portmap's DNAT, then the pod."""
    from ..net import portmap_nft
    target = portmap_nft.target_of(proto.lower(), port, dst) if proto in ("TCP", "UDP") else None
    if target is None:
        hops.append(Hop(f"node {view.name} ({dst}): no hostPort mapping for {proto.lower()}/{port}", False,
                        f"the pod that asked for hostPort {port}: is it running (its ADD makes the mapping)? "
                        f"`nft list table {portmap_nft.TABLE}`"))
        return _answer(view, hops, {"kind": "broken"})
    pod_ip, pod_port = ipaddress.ip_address(target[0]), target[1]
    hops.append(Hop(f"hostPort {proto.lower()}/{port} on node {view.name} → DNAT to {pod_ip}:{pod_port} "
                    f"(table {portmap_nft.TABLE})"))
    veth, path = _local_pod(host, pod_ip, view)
    if veth is None:
        hops.append(Hop(f"node {view.name} has no route to its pod {pod_ip} (the hostPort's target)", False,
                        "the pod's host route (made by its CNI ADD) is gone: CNI CHECK reports it"))
        return _answer(view, hops, {"kind": "broken"})
    return _deliver(view, host, src, pod_ip, proto, pod_port, veth.name, path, hops)


def _deliver(view: NodeView, host: Rtnl, src: IPAddr, dst: IPAddr, proto: str, port: int, veth: str,
             path: str | None, hops: list[Hop]) -> dict[str, Any]:
    if path is None:
        hops.append(Hop(f"route {dst} dev {veth}: its pod's netns is not found", False,
                        "the pod is gone or going; its host route should have gone with it"))
        return _answer(view, hops, {"kind": "broken"})
    up, ifname = addr.holder_of(path, dst)
    if not ifname:
        hops.append(Hop(f"route {dst} dev {veth} → pod {os.path.basename(path)}: {dst} is not on any of its "
                        f"interfaces", False, "the pod's address is gone: CNI CHECK reports it"))
        return _answer(view, hops, {"kind": "broken"})
    if not up:
        hops.append(Hop(f"pod {dst} {ifname} is down", False, f"`ip link set {ifname} up` in the pod"))
        return _answer(view, hops, {"kind": "broken"})
    hops.append(Hop(f"route {dst} dev {veth} → pod {dst} {ifname} ({os.path.basename(path)}, node {view.name})"))
    hops.extend(_policy(view, src, dst, port, proto, "ingress"))
    return _answer(view, hops, {"kind": "deliver"} if hops[-1].ok else {"kind": "broken"})


def arrive(view: NodeView, src: IPAddr, dst: IPAddr, proto: str, port: int, from_addr: str,
           expect_local: bool = False, hostport: bool = False) -> dict[str, Any]:
    """The packet arrives from the underlay (or the VXLAN device) for `dst`."""
    with open_rtnl() as host:
        vx = host.link(VXLAN_DEV)
        iif = 0
        if vx is not None and _in_cluster(view, dst):
            iif = vx.index
        else:
            r = host.lookup(ipaddress.ip_address(from_addr)) if from_addr else None
            iif = r.oif if r is not None and r.kind == "unicast" else 0
        hops: list[Hop] = [Hop(f"node {view.name} ({view.addr}) receives it"
                               + (f" on {VXLAN_DEV}" if iif and vx is not None and iif == vx.index else ""))]
        return _forward(view, host, src, dst, proto, port, iif, hops, expect_local, hostport)


def _answer(view: NodeView, hops: list[Hop], nxt: dict[str, Any]) -> dict[str, Any]:
    return {"node": view.name, "hops": [asdict(h) for h in hops], "next": nxt}


def handle(view: NodeView, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """GET /trace/hop?stage=origin|arrive&src=IP&dst=IP&proto=TCP&port=N[&from=IP]."""
    try:
        src, dst = ipaddress.ip_address(query["src"]), ipaddress.ip_address(query["dst"])
        port = int(query.get("port") or 0)
    except (KeyError, ValueError) as e:
        return 400, {"error": f"src and dst: addresses; port: a number ({e})"}
    proto = (query.get("proto") or "TCP").upper()
    stage = query.get("stage", "origin")
    hostport = query.get("hostport") == "1"
    if stage == "origin":
        return 200, origin(view, src, dst, proto, port, hostport)
    if stage == "arrive":
        return 200, arrive(view, src, dst, proto, port, query.get("from", ""), query.get("local") == "1", hostport)
    return 400, {"error": "stage: origin or arrive"}
