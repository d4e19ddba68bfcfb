"""Pods' addresses as Neutron ports, and the node VM's port told about them (allowed address pairs).

Every pod interface is one Neutron port: `device_owner` podnet:pod, `device_id` the container
ID, `name` "<namespace>/<pod>/<ifname>", and a description "podnet node=… network=… ifname=…" that
says whose it is (Neutron filters on owner and device; the rest is matched here).  The node VM's
own port must then accept the pod's packets — port security drops any (IP, MAC) it does not hold —
so its `allowed_address_pairs` are kept right, in one of three ways (`pairs`):

  per-ip  one pair per pod (the pod's address and MAC).  Neutron's default max_allowed_address_pair
          is 10: the pod past it is refused, the error naming the limit.
  cidr    one pair per node *block*: the node claims blocks of `pod_range` (a block is claimed by
          creating a podnet:block port on its first address — Neutron's unique fixed-IP constraint
          makes the claim atomic, no other lock needed) and its pods get addresses inside its
          blocks, so the pairs grow with blocks, not pods.
  none    pairs are someone else's business (port security off, or an operator).

Pairs are a whole-list PUT: every change is read → change → PUT with If-Match: revision_number,
retried on 412 (another writer won).  If-Match alone does not serialise writers: two PUTs that
read the same revision can both pass Neutron's check before either commits (seen here with 8
concurrent DELs on MariaDB: pairs of deleted pods stayed).  Only this node changes its own port's
pairs, so every change also holds a node-local lock (a thread lock and an flock under LOCK_DIR):
then no two of them overlap, and If-Match still guards against anyone else (an operator).

Ready ports (`pool`): in the agent a keeper keeps a few podnet:pool ports per node made ahead of
time (pairs in place); ADD claims one with an If-Match PUT — no port create on the pod's path.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import AddressUnavailable, Conflict, IpamError, RangeExhausted
from .neutron_api import NeutronAPI, NeutronError

log = logging.getLogger(__name__)

OWNER_POD = "podnet:pod"
OWNER_POOL = "podnet:pool"
OWNER_BLOCK = "podnet:block"
PAIR_RETRIES = 12
LOCK_DIR = "/run/podnet/neutron"
SUBNET_TTL = 300.0           # the network and subnet rarely change: cached this long per process
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class PairLimit(IpamError):
    """The node's port holds Neutron's max_allowed_address_pair pairs already."""


@dataclass(frozen=True)
class Settings:
    network: str                      # Neutron network: ID or name
    subnet: str                       # its subnet: ID or name ("" = the network's only subnet of `family`)
    node: str
    cni_network: str                  # the CNI network's name: ports of two networks never mix
    node_port: str = ""               # the node VM's port ID ("" = found by node_address)
    node_address: str = ""
    pairs: str = "per-ip"             # per-ip | cidr | none
    pair_mac: str = "pod"             # pod: the pod port's MAC (macvlan takes it) | node: the VM's (ipvlan)
    pod_range: IPNetwork | None = None
    block_size: int = 28
    family: int = 4


@dataclass(frozen=True)
class Port:
    id: str
    ip: IPAddr
    mac: str
    name: str
    description: str
    revision: int

    @classmethod
    def of(cls, doc: dict[str, Any], subnet_id: str) -> Port:
        fixed = [f for f in doc.get("fixed_ips", []) if f.get("subnet_id") == subnet_id] or doc.get("fixed_ips", [])
        if not fixed:
            raise IpamError(f"Neutron port {doc.get('id')} has no fixed IP")
        return cls(str(doc["id"]), ipaddress.ip_address(fixed[0]["ip_address"]), str(doc.get("mac_address", "")),
                   str(doc.get("name", "")), str(doc.get("description", "")), int(doc.get("revision_number", 0)))


@dataclass(frozen=True)
class Subnet:
    id: str
    network_id: str
    cidr: IPNetwork
    gateway: IPAddr | None
    dns: tuple[str, ...]


def describe(node: str, cni_network: str, ifname: str) -> str:
    return f"podnet node={node} network={cni_network} ifname={ifname}"


def parse_description(text: str) -> dict[str, str]:
    """podnet's description of a port as a dict ({} for a port that is not podnet's)."""
    words = text.split()
    if not words or words[0] != "podnet":
        return {}
    return dict(w.split("=", 1) for w in words[1:] if "=" in w)


def port_name(namespace: str, pod: str, ifname: str, container_id: str) -> str:
    return (f"{namespace}/{pod}/{ifname}" if namespace and pod else f"{container_id[:12]}/{ifname}")[:255]


_subnets: dict[tuple[str, str, str, int], tuple[float, Subnet]] = {}
_pair_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _uuid_like(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


class NeutronIpam:
    def __init__(self, api: NeutronAPI, settings: Settings) -> None:
        self.api, self.s = api, settings

    # -- the network, the subnet, the node's port ----------------------------------------------------
    def subnet(self) -> Subnet:
        key = (self.api.endpoint, self.s.network, self.s.subnet, self.s.family)
        hit = _subnets.get(key)
        if hit and time.monotonic() - hit[0] < SUBNET_TTL:
            return hit[1]
        net = self._network()
        if self.s.subnet:
            if _uuid_like(self.s.subnet):
                docs = [self.api.ok("GET", f"/v2.0/subnets/{self.s.subnet}", what=f"subnet {self.s.subnet}")["subnet"]]
            else:
                docs = self.api.list("subnet", {"name": self.s.subnet, "network_id": net})
        else:
            docs = [d for d in self.api.list("subnet", {"network_id": net}) if d.get("ip_version") == self.s.family]
        if len(docs) != 1:
            what = f"subnet {self.s.subnet!r}" if self.s.subnet else f"an IPv{self.s.family} subnet"
            raise IpamError(f"network {self.s.network}: {len(docs)} matches for {what} (name it by ID in ipam.subnet)")
        d = docs[0]
        sub = Subnet(str(d["id"]), str(d["network_id"]), ipaddress.ip_network(d["cidr"]),
                     ipaddress.ip_address(d["gateway_ip"]) if d.get("gateway_ip") else None,
                     tuple(d.get("dns_nameservers") or ()))
        if self.s.pod_range is not None and not _inside(self.s.pod_range, sub.cidr):
            raise IpamError(f"podRange {self.s.pod_range} is not inside subnet {sub.cidr}")
        _subnets[key] = (time.monotonic(), sub)
        return sub

    def _network(self) -> str:
        if _uuid_like(self.s.network):
            return str(self.api.ok("GET", f"/v2.0/networks/{self.s.network}",
                                   what=f"network {self.s.network}")["network"]["id"])
        docs = self.api.list("network", {"name": self.s.network})
        if len(docs) != 1:
            raise IpamError(f"network {self.s.network!r}: {len(docs)} Neutron networks have that name (give its ID)")
        return str(docs[0]["id"])

    def node_port(self) -> dict[str, Any]:
        """The node VM's port (fresh: its pairs and revision are what the next PUT builds on)."""
        if self.s.node_port:
            return dict(self.api.ok("GET", f"/v2.0/ports/{self.s.node_port}", what="the node's port")["port"])
        if not self.s.node_address:
            raise IpamError("the node's port: give nodePort, or nodeAddress (its address on the subnet)")
        sub = self.subnet()
        found = self.api.list("port", [("network_id", sub.network_id),
                                       ("fixed_ips", f"ip_address={self.s.node_address}")])
        if len(found) != 1:
            raise IpamError(f"the node's port: {len(found)} ports hold {self.s.node_address} on network "
                            f"{self.s.network} (give nodePort)")
        return dict(found[0])

    # -- pods' ports ---------------------------------------------------------------------------------
    def _mine(self, owner: str, device_id: str = "") -> list[dict[str, Any]]:
        """Ports of `owner` (and `device_id`) on this network that this node made for this CNI network."""
        q = [("device_owner", owner), ("network_id", self.subnet().network_id)]
        if device_id:
            q.append(("device_id", device_id))
        out = []
        for doc in self.api.list("port", q):
            d = parse_description(str(doc.get("description", "")))
            if d.get("node") == self.s.node and d.get("network") == self.s.cni_network:
                out.append(doc)
        return out

    def find(self, container_id: str, ifname: str) -> Port | None:
        sub = self.subnet()
        for doc in self._mine(OWNER_POD, container_id):
            if parse_description(str(doc.get("description", ""))).get("ifname") == ifname:
                return Port.of(doc, sub.id)
        return None

    def allocate(self, container_id: str, ifname: str, name: str, static: IPAddr | None = None,
                 claim: Callable[[], Port | None] | None = None) -> Port:
        """The pod's port: the one it already has (a repeated ADD), a ready one from the pool
        (`claim`), or a new one — with the node port's pair in place.  On any failure after the
        port exists it is deleted: nothing leaks."""
        found = self.find(container_id, ifname)
        if found is not None:
            if static is not None and found.ip != static:
                raise AddressUnavailable(f"{container_id}/{ifname} already holds {found.ip}, not {static}")
            self.ensure_pair(found)
            return found
        desc = describe(self.s.node, self.s.cni_network, ifname)
        if static is None and claim is not None:
            pooled = claim()
            if pooled is not None:
                return pooled
        return self._create_paired(container_id, name, desc, static)

    def _create_paired(self, device_id: str, name: str, desc: str, static: IPAddr | None,
                       owner: str = OWNER_POD) -> Port:
        """A new port with the node port's pair in place — or, the pair refused, no port at all."""
        port = self._create(device_id, name, desc, static, owner)
        try:
            self.ensure_pair(port)
        except BaseException:
            self.delete_port(port.id)
            raise
        return port

    def _create(self, container_id: str, name: str, desc: str, static: IPAddr | None,
                owner: str = OWNER_POD) -> Port:
        sub = self.subnet()
        if static is not None:
            if static not in sub.cidr:
                raise AddressUnavailable(f"{static} is not in subnet {sub.cidr} ({self.s.network})")
            return self._post(container_id, name, desc, sub, static, owner)
        if self.s.pairs != "cidr":
            return self._post(container_id, name, desc, sub, None, owner)
        # the node's blocks are its alone: only its own ADDs contend for their addresses — one at a
        # time (8 at once all tried the same first free address: 409s, retries, seconds of tail)
        key = f"alloc-{self.s.node}-{sub.id}"
        with _lock_for(key), _node_flock(key):
            return self._create_in_blocks(container_id, name, desc, sub, owner)

    def _create_in_blocks(self, container_id: str, name: str, desc: str, sub: Subnet, owner: str) -> Port:
        for block in self.blocks(claim_if_none=True):
            port = self._post_in_block(container_id, name, desc, sub, block, owner)
            if port is not None:
                return port
        while True:                          # every block full: claim another, until pod_range is spent
            block = self.claim_block()
            port = self._post_in_block(container_id, name, desc, sub, block, owner)
            if port is not None:
                return port

    def _post(self, container_id: str, name: str, desc: str, sub: Subnet, ip: IPAddr | None,
              owner: str = OWNER_POD) -> Port:
        fixed: dict[str, str] = {"subnet_id": sub.id}
        if ip is not None:
            fixed["ip_address"] = str(ip)
        body = {"port": {"network_id": sub.network_id, "fixed_ips": [fixed], "device_owner": owner,
                         "device_id": container_id, "name": name, "description": desc}}
        try:
            doc = self.api.ok("POST", "/v2.0/ports", body, what=f"port for {name}")
        except NeutronError as e:
            if e.kind == "IpAddressGenerationFailure":
                raise RangeExhausted(f"Neutron subnet {sub.cidr} ({sub.id}) has no free address") from None
            if e.kind == "IpAddressAlreadyAllocated":
                raise AddressUnavailable(f"{ip} is already allocated in subnet {sub.cidr} ({sub.id})") from None
            if e.kind == "OverQuota":
                raise RangeExhausted(f"the project's Neutron port quota is used up ({e.message})") from None
            raise
        return Port.of(doc["port"], sub.id)

    def _post_in_block(self, container_id: str, name: str, desc: str, sub: Subnet, block: IPNetwork,
                       owner: str) -> Port | None:
        """A port on a free address of `block` (None when the block is full)."""
        used = {p.ip for p in self._ports_in(block)} | {_block_anchor(block, sub.cidr)}
        for ip in _hosts(block, sub):
            if ip in used:
                continue
            try:
                return self._post(container_id, name, desc, sub, ip, owner)
            except AddressUnavailable:
                continue                     # taken since we looked (another writer, or a VM): the next
        return None

    def _ports_in(self, block: IPNetwork) -> list[Port]:
        """This node's pod and ready ports inside `block` (the block is the node's alone; anything
        else on one of its addresses — a VM — is met as a 409 and skipped)."""
        sub = self.subnet()
        docs = self._mine(OWNER_POD) + self._mine(OWNER_POOL, f"node:{self.s.node}")
        return [p for p in (Port.of(d, sub.id) for d in docs) if p.ip in block]

    def delete_port(self, port_id: str) -> None:
        status, doc = self.api.request("DELETE", f"/v2.0/ports/{port_id}", what=f"delete port {port_id}")
        if status not in (204, 404):
            err = doc.get("NeutronError") or {}
            raise NeutronError(status, str(err.get("type", "")), str(err.get("message", doc)), "delete port")

    def release(self, container_id: str, ifname: str) -> list[Port]:
        """DEL: every port of (container, ifname) and its pair; nothing there is success."""
        sub = self.subnet()
        gone = []
        for doc in self._mine(OWNER_POD, container_id):
            if parse_description(str(doc.get("description", ""))).get("ifname") != ifname:
                continue
            port = Port.of(doc, sub.id)
            self.drop_pair(port)
            self.delete_port(port.id)
            gone.append(port)
        return gone

    def gc(self, valid: set[tuple[str, str]]) -> list[Port]:
        """This node's pod ports of this network whose (container, ifname) is not valid; then the
        pairs and blocks nothing holds any more."""
        sub = self.subnet()
        gone = []
        for doc in self._mine(OWNER_POD):
            ifname = parse_description(str(doc.get("description", ""))).get("ifname", "")
            if (str(doc.get("device_id")), ifname) in valid:
                continue
            port = Port.of(doc, sub.id)
            self.delete_port(port.id)
            gone.append(port)
        self.gc_pairs()
        return gone

    # -- the node port's pairs -----------------------------------------------------------------------
    def _pair_of(self, port: Port) -> dict[str, str]:
        pair = {"ip_address": str(port.ip)}
        if self.s.pair_mac == "pod":
            pair["mac_address"] = port.mac
        return pair

    def ensure_pair(self, port: Port) -> None:
        if self.s.pairs == "none":
            return
        if self.s.pairs == "cidr" and any(port.ip in b for b in self.blocks()):
            return                           # its block's pair covers it
        want = self._pair_of(port)
        self.update_pairs(lambda pairs: None if any(_same_pair(p, want) for p in pairs) else [*pairs, want])

    def drop_pair(self, port: Port) -> None:
        if self.s.pairs == "none":
            return
        want = self._pair_of(port)
        self.update_pairs(lambda pairs: [p for p in pairs if not _same_pair(p, want)]
                          if any(_same_pair(p, want) for p in pairs) else None)

    def update_pairs(self, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]) -> None:
        """read → change → PUT with If-Match, retried on 412; serialised per node port in this process."""
        port_id = self.s.node_port or str(self.node_port()["id"])
        with _lock_for(port_id), _node_flock(f"pairs-{port_id}"):
            for attempt in range(PAIR_RETRIES):
                node_port = self.node_port()      # read under the lock: the change builds on the latest
                new = change(list(node_port.get("allowed_address_pairs") or []))
                if new is None:
                    return
                status, doc = self.api.request(
                    "PUT", f"/v2.0/ports/{node_port['id']}", {"port": {"allowed_address_pairs": new}},
                    headers={"If-Match": f"revision_number={node_port['revision_number']}"}, what="the node port's pairs")
                if status == 200:
                    return
                err = doc.get("NeutronError") or {}
                if status == 412:
                    time.sleep(random.uniform(0.01, 0.05) * (attempt + 1))
                    continue
                if err.get("type") == "AllowedAddressPairExhausted":
                    raise PairLimit(f"the node's port {node_port['id']} already holds Neutron's "
                                    f"max_allowed_address_pair pairs ({len(new) - 1}): per-ip pairs cap this node "
                                    "there — use addressPairs: cidr (one pair per block), or raise "
                                    "max_allowed_address_pair on the Neutron server") from None
                raise NeutronError(status, str(err.get("type", "")), str(err.get("message", doc)),
                                   "the node port's pairs")
            raise Conflict(f"the node port's pairs: still changing under us after {PAIR_RETRIES} tries (412)")

    def gc_pairs(self) -> None:
        """Pairs on the node port that podnet made and no port holds any more: per-ip pairs of
        addresses inside the subnet (and pod_range, when given) that no port holds; cidr pairs of
        this node's released blocks are dropped with the block."""
        if self.s.pairs != "per-ip":
            return
        sub = self.subnet()
        held = {ipaddress.ip_address(f["ip_address"]) for d in self.api.list("port", [("network_id", sub.network_id)])
                for f in d.get("fixed_ips", [])}

        def orphan(p: dict[str, Any]) -> bool:
            try:
                net = ipaddress.ip_network(p["ip_address"], strict=False)
            except ValueError:
                return False
            if net.num_addresses != 1 or net[0] not in sub.cidr or net[0] in held:
                return False
            return self.s.pod_range is None or net[0] in self.s.pod_range
        self.update_pairs(lambda pairs: [p for p in pairs if not orphan(p)] if any(orphan(p) for p in pairs) else None)

    # -- blocks (pairs: cidr) ------------------------------------------------------------------------
    def _block_ports(self) -> list[dict[str, Any]]:
        return self.api.list("port", [("device_owner", OWNER_BLOCK), ("network_id", self.subnet().network_id)])

    def blocks(self, claim_if_none: bool = False) -> list[IPNetwork]:
        mine = [ipaddress.ip_network(parse_description(str(d.get("description", ""))).get("block", "0.0.0.0/32"))
                for d in self._block_ports() if str(d.get("device_id")) == f"node:{self.s.node}"]
        mine = [b for b in mine if b.prefixlen != b.max_prefixlen]
        if not mine and claim_if_none:
            return [self.claim_block()]
        return sorted(mine, key=lambda b: int(b.network_address))

    def claim_block(self) -> IPNetwork:
        """The next free block of pod_range for this node: a podnet:block port on its anchor address
        (409 = someone holds that address: the next block), then the block's pair on the node port."""
        if self.s.pod_range is None:
            raise IpamError("addressPairs cidr needs podRange (the pods' part of the subnet)")
        sub = self.subnet()
        taken = {parse_description(str(d.get("description", ""))).get("block") for d in self._block_ports()}
        for block in self.s.pod_range.subnets(new_prefix=self.s.block_size):
            if str(block) in taken:
                continue
            desc = f"podnet block={block} node={self.s.node}"
            try:
                port = self._post(f"node:{self.s.node}", f"podnet-block {block}", desc, sub,
                                  _block_anchor(block, sub.cidr), OWNER_BLOCK)
            except AddressUnavailable:
                continue
            if self.s.pairs == "cidr":
                try:
                    self.update_pairs(_adding_cidr(str(block)))
                except BaseException:
                    self.delete_port(port.id)
                    raise
            log.info("node %s claimed block %s", self.s.node, block)
            return block
        raise RangeExhausted(f"podRange {self.s.pod_range}: every /{self.s.block_size} block is claimed")

    def release_empty_blocks(self) -> list[IPNetwork]:
        """This node's blocks no pod port is in: their pair, then their claim port."""
        out = []
        for d in self._block_ports():
            if str(d.get("device_id")) != f"node:{self.s.node}":
                continue
            block = ipaddress.ip_network(parse_description(str(d.get("description", ""))).get("block", ""))
            anchor = _block_anchor(block, self.subnet().cidr)
            if any(p.ip != anchor for p in self._ports_in(block)):
                continue
            self.update_pairs(_removing_cidr(str(block)))
            self.delete_port(str(d["id"]))
            out.append(block)
        return out

    # -- the agent's pool of ready ports -------------------------------------------------------------
    def pool_ports(self) -> list[Port]:
        sub = self.subnet()
        return [Port.of(d, sub.id) for d in self._mine(OWNER_POOL, f"node:{self.s.node}")]

    def make_pool_port(self) -> Port:
        """One ready port: created and paired now, claimed by a pod's ADD later."""
        desc = describe(self.s.node, self.s.cni_network, "")
        return self._create_paired(f"node:{self.s.node}", f"podnet-pool {self.s.node}", desc, None, OWNER_POOL)

    def claim_pool_port(self, port: Port, container_id: str, ifname: str, name: str) -> Port | None:
        """Turn a ready port into the pod's (If-Match: a port claimed by someone else is not ours)."""
        body = {"port": {"device_owner": OWNER_POD, "device_id": container_id, "name": name,
                         "description": describe(self.s.node, self.s.cni_network, ifname)}}
        status, doc = self.api.request("PUT", f"/v2.0/ports/{port.id}", body,
                                       headers={"If-Match": f"revision_number={port.revision}"}, what="claim a ready port")
        if status == 200:
            return Port.of(doc["port"], self.subnet().id)
        if status in (404, 412):
            return None
        err = doc.get("NeutronError") or {}
        raise NeutronError(status, str(err.get("type", "")), str(err.get("message", doc)), "claim a ready port")


PairChange = Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None]


def _adding_cidr(cidr: str) -> PairChange:
    return lambda pairs: None if any(p.get("ip_address") == cidr for p in pairs) else [*pairs, {"ip_address": cidr}]


def _removing_cidr(cidr: str) -> PairChange:
    return lambda pairs: [p for p in pairs if p.get("ip_address") != cidr] \
        if any(p.get("ip_address") == cidr for p in pairs) else None


@contextlib.contextmanager
def _node_flock(key: str) -> Iterator[None]:
    """A node-wide lock (every launcher and the agent on this node): a node port's pairs, or the
    allocation in a node's blocks."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(LOCK_DIR, f"{key}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _lock_for(port_id: str) -> threading.Lock:
    with _locks_guard:
        return _pair_locks.setdefault(port_id, threading.Lock())


def _same_pair(p: dict[str, Any], want: dict[str, str]) -> bool:
    if p.get("ip_address") != want["ip_address"]:
        return False
    return "mac_address" not in want or str(p.get("mac_address", "")).lower() == want["mac_address"].lower()


def _inside(inner: IPNetwork, outer: IPNetwork) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _block_anchor(block: IPNetwork, subnet: IPNetwork) -> IPAddr:
    """The address a block's claim port holds: its first, or its last when the first is the subnet's
    own network address."""
    return block[0] if block[0] != subnet.network_address else block[-1]


def _hosts(block: IPNetwork, sub: Subnet) -> Iterable[IPAddr]:
    skip = {sub.cidr.network_address, sub.gateway}
    if sub.cidr.version == 4:
        skip.add(sub.cidr.broadcast_address)
    return (ip for ip in block if ip not in skip)

