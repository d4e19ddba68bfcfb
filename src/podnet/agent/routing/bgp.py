"""bgp (Calico's model): every node speaks BGP through its own BIRD 2 and announces its pod
CIDRs, so the network itself (a top-of-rack router) can route to pods — no overlay, and with
`no-nat-cidr` no masquerade either.

The agent runs BIRD as a daemon beside itself (daemon.py: own session, adopted after an agent
restart, so sessions never flap because the agent restarted; restarted with graceful-restart
recovery `-R` if it dies, so its peers keep its routes meanwhile), renders BIRD's configuration
from the datastore (birdconf.py), checks every render with `bird -p -c` before it replaces the
running one (a bad render never reaches BIRD: the error is kept for `podnet doctor`), and applies
it over the control socket (`configure`, net/birdc.py).

Routes: BIRD writes what it learns into kernel table BGP_TABLE; each pass the agent mirrors that
table into the main table with podnet's route protocol (so one reconcile loop owns every
cross-node route, as for host-gw: a next hop off the connected networks is refused with the
reason, a route somebody else made is never replaced), and puts a blackhole route under each of
this node's own CIDRs (an address no pod holds goes nowhere instead of back out the default
route).  A change in that table wakes the loop at once.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...net.birdc import Birdc, BirdError
from ...net.errors import NetError
from ...net.rtnl import PODNET_PROTO, Rtnl, watch_table
from .base import (
    BLACKHOLE,
    DEVICE,
    UNREACHABLE,
    Families,
    Hop,
    IPNet,
    NodeIdentity,
    NodeInfo,
    Reconcile,
    encryption_mismatches,
    hop_of,
    sync_routes,
    unreachable_for,
)
from .birdconf import BGP_TABLE, BirdView, Neighbour, protocol_name, render
from .daemon import SocketDaemon

log = logging.getLogger(__name__)

DEFAULT_AS = 64512


@dataclass(frozen=True)
class ExternalPeer:
    addr: str
    asn: int
    password: str = ""


def parse_peer(text: str) -> ExternalPeer:
    """"ADDR/AS" or "ADDR/AS/PASSWORD" (the `bgp-peers` setting)."""
    parts = text.split("/", 2)
    try:
        addr = str(ipaddress.ip_address(parts[0]))
        asn = int(parts[1])
        if not 0 < asn < 2 ** 32:
            raise ValueError
    except (ValueError, IndexError):
        raise ValueError(f"{text!r} is not ADDR/AS[/PASSWORD] (e.g. 10.0.0.254/64600)") from None
    return ExternalPeer(addr, asn, parts[2] if len(parts) > 2 else "")


class Bgp:
    name = "bgp"
    status_path = "/bgp"
    routes_beside_encryption = True      # with --encryption wireguard BIRD keeps running (wireguard.py)

    def __init__(self, me: NodeIdentity, state_dir: str = "/var/lib/podnet", asn: int = DEFAULT_AS,
                 route_reflector: bool = False, peers: tuple[str, ...] = (), hold_time: int = 90,
                 graceful_restart_time: int = 120, drain_on_stop: bool = False, external: bool = False) -> None:
        """external: BIRD is run by someone else (the DaemonSet's bird container, which waits for
        the config this agent writes); the agent only configures it."""
        self.me, self.asn, self.route_reflector = me, asn, route_reflector
        self.external = [parse_peer(p) for p in peers]
        self.hold_time, self.gr_time, self.drain_on_stop = hold_time, graceful_restart_time, drain_on_stop
        self.dir = os.path.join(state_dir, "bird")
        self.conf = os.path.join(self.dir, "bird.conf")
        self.birdc = Birdc(os.path.join(self.dir, "bird.ctl"))
        self.daemon = SocketDaemon("bird", self.birdc.path, self.birdc.alive, os.path.join(self.dir, "bird.out"),
                                   external=external)
        self.families = Families()
        self.config_error = ""                 # the last render BIRD's check refused (doctor shows it)
        self.neighbours: dict[str, str] = {}   # BIRD protocol name → node name or "peer ADDR"
        self.skipped: list[str] = []           # nodes left out of the render, and why
        self.reachable_nodes: set[str] = set()  # the other nodes whose blocks BIRD should learn
        self.wake: Any = None                  # the loop's wake(): BIRD exited, or its table changed
        self._died = False                     # BIRD exited without being asked: restart it with -R
        self._bird_pid, self._since, self._is_settled = 0, 0.0, False
        self._unwatch: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self.encrypted = False                 # wrapped by WireGuard: it owns the other nodes' CIDRs' routes
        self.leave_alone: set[IPNet] = set()   # … these (and its device and unreachable routes)

    # ------------------------------------------------------------ the Backend protocol
    def start(self, host: Rtnl) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        if shutil.which("bird") is None and not self.daemon.external:
            raise NetError("routing bgp needs BIRD 2 (Debian: apt install bird2)")
        self._unwatch = watch_table(BGP_TABLE, self._poke)

    def publish(self) -> dict[str, str]:
        return {"bgp_as": str(self.asn), **({"bgp_rr": "1"} if self.route_reflector else {})}

    def _poke(self) -> None:
        if self.wake is not None:
            self.wake()

    def _exited(self) -> None:
        self._died = True
        self._poke()

    def apply(self, host: Rtnl, nodes: dict[str, NodeInfo], owners: dict[IPNet, str]) -> Reconcile:
        own = sorted((c for c, n in owners.items() if n == self.me.name), key=str)
        running = self._bird(self._view(nodes, own))
        fams = self.families.update(nodes, owners)
        entries = [e for fam in fams for e in host.routes(fam)]
        have = {(e.dst, hop_of(e)) for e in entries if e.proto == PODNET_PROTO and e.dst not in self.leave_alone
                and not (self.encrypted and hop_of(e) in (DEVICE, UNREACHABLE))}
        foreign = {e.dst for e in entries if e.proto != PODNET_PROTO}
        connected = [e.dst for e in entries if e.gw is None and e.dst.prefixlen > 0 and e.proto != PODNET_PROTO]
        want: dict[IPNet, Hop] = dict.fromkeys(own, BLACKHOLE)
        why: dict[IPNet, str] = {}
        if not self.encrypted:     # a node that encrypts gets no plaintext from us (base.encryption_mismatches)
            why = unreachable_for(encryption_mismatches(self.me.name, False, nodes), owners)
            want.update(dict.fromkeys(why, UNREACHABLE))
        learned: dict[IPNet, Hop] = {}
        if running:
            for fam in fams:
                for e in host.routes(fam, table=BGP_TABLE):
                    if e.gw is not None and e.dst not in want and e.dst not in self.leave_alone:
                        learned[e.dst] = e.gw
        expected = {c for c, n in owners.items() if n in self.reachable_nodes and c.version == self.me.addr.version
                    and c not in want and c not in self.leave_alone}
        if not (running and self._settled(expected <= learned.keys())):
            # BIRD is (re)starting, or relearning after a restart: keep what it had taught us
            # (its table may be empty or partial for a moment), add what it already knows
            want.update({dst: hop for dst, hop in have if dst not in want})
        want.update(learned)

        def refuse(dst: IPNet, gw: Hop) -> str:
            if dst in foreign:
                return "a route podnet did not make already covers it (left alone)"
            return "" if any(gw in net for net in connected) else "next hop not on a directly connected network"

        def add(dst: IPNet, gw: Hop) -> None:
            assert not isinstance(gw, str)
            host.add_route(dst, gw=gw, replace=True, proto=PODNET_PROTO)
        r = sync_routes(host, want, add, refuse, have, why)
        if self.config_error:
            r.refused.append(f"BIRD configuration: {self.config_error}")
        r.refused.extend(self.skipped)
        return r

    def _view(self, nodes: dict[str, NodeInfo], own: list[IPNet]) -> BirdView:
        reflectors = {n for n, i in nodes.items() if i.get("bgp_rr")}
        neighbours: list[Neighbour] = []
        names: dict[str, str] = {}
        skipped: list[str] = []
        reachable: set[str] = set()
        for n, info in sorted(nodes.items()):
            if n == self.me.name:
                continue
            try:
                addr = ipaddress.ip_address(info["addr"])
                asn = int(info.get("bgp_as") or DEFAULT_AS)
                if not 0 < asn < 2 ** 32:
                    raise ValueError
            except (KeyError, ValueError):
                skipped.append(f"node {n}: its record has no usable address or AS ({info.get('bgp_as')!r})")
                continue
            if addr.version != self.me.addr.version:
                continue
            reachable.add(n)
            if reflectors and self.me.name not in reflectors and n not in reflectors:
                continue                         # clients peer only with the reflectors (who pass the rest on)
            name = protocol_name("node_", n)
            names[name] = n
            neighbours.append(Neighbour(name, str(addr), asn,
                                        rr_client=self.me.name in reflectors and n not in reflectors))
        for p in self.external:
            name = protocol_name("peer_", p.addr)
            names[name] = f"peer {p.addr}"
            neighbours.append(Neighbour(name, p.addr, p.asn, password=p.password, external=True))
        self.neighbours, self.skipped, self.reachable_nodes = names, skipped, reachable
        return BirdView(str(self.me.addr), self.asn, tuple(map(str, own)), tuple(neighbours), self.hold_time,
                        graceful_restart_time=self.gr_time, log_path=os.path.join(self.dir, "bird.log"),
                        families=(self.me.addr.version,), next_hop={self.me.addr.version: str(self.me.addr)})

    def _bird(self, view: BirdView) -> bool:
        """BIRD running with this configuration (True), or still on its previous one because the
        new render was refused (whether it runs); DaemonError when it cannot be reached."""
        text = render(view)
        with self._lock:
            try:
                current = open(self.conf).read()
            except FileNotFoundError:
                current = ""
            if text != current:
                if not self._check(text):
                    return self.birdc.alive()
                os.replace(f"{self.conf}.new", self.conf)
            # not running and not startable (or, external, not up yet): the pass fails — the node is
            # not ready before BIRD answers, and the routes already made stay meanwhile
            restarted = self.daemon.ensure(self._argv, self._exited)
            if text != current and not restarted:
                answer = self.birdc.configure(self.conf)
                log.info("BIRD reconfigured: %s", answer)
            pid = self.daemon.pid()
            if pid != self._bird_pid:              # a BIRD we have not seen settle yet
                self._bird_pid, self._since, self._is_settled = pid, time.monotonic(), False
            return True

    def _settled(self, relearned: bool) -> bool:
        """Whether BIRD's table can be mirrored as it is, removals included: every session to a
        node is Established and every other node's block is back in its table (`relearned`: a
        session is Established a moment before its peer's updates arrive), or it has had a hold
        time and more to get there (a peer that is still down is down for real)."""
        if not self._is_settled:
            try:
                sessions = [p for p in self.birdc.protocols().values() if p.proto == "BGP" and p.name.startswith("node_")]
            except BirdError:
                return False
            self._is_settled = (relearned and all(p.info.startswith("Established") for p in sessions)) or \
                time.monotonic() - self._since > self.hold_time + 5
        return self._is_settled

    def _check(self, text: str) -> bool:
        """`bird -p -c` on the new render; the running BIRD is not touched when it fails."""
        new = f"{self.conf}.new"
        with open(new, "w") as f:
            f.write(text)
        p = subprocess.run(["bird", "-p", "-c", new], capture_output=True, text=True)
        if p.returncode:
            self.config_error = (p.stderr or p.stdout).strip().splitlines()[-1] if (p.stderr or p.stdout) else \
                f"bird -p exited {p.returncode}"
            log.error("BIRD refused the rendered configuration (the running one stays): %s", self.config_error)
            return False
        self.config_error = ""
        return True

    def _argv(self) -> list[str]:
        argv = ["bird", "-f", "-c", self.conf, "-s", self.birdc.path, "-P", os.path.join(self.dir, "bird.pid")]
        if self._died:           # it crashed: tell its peers it is restarting, keep the kernel table meanwhile
            argv.append("-R")
            self._died = False
        return argv

    def pod_mtu(self, host: Rtnl) -> int:
        return 0

    def stop(self) -> None:
        """BIRD and the routes stay (no session flaps on an agent restart) — unless drain-on-stop:
        BIRD shuts its sessions down and every peer withdraws this node's routes at once."""
        if self._unwatch is not None:
            self._unwatch()
        if self.drain_on_stop:
            try:
                self.birdc.down()
                log.info("BIRD shut down (drain on stop): peers withdraw this node's routes")
            except BirdError as e:
                log.warning("drain on stop: %s", e)

    # ------------------------------------------------------------ status (node ls, doctor)
    def status(self) -> dict[str, Any]:
        try:
            protos = self.birdc.protocols()
            state = self.birdc.status()
        except BirdError as e:
            return {"bird": "down", "error": str(e), "sessions": [], "config_error": self.config_error}
        sessions = [{"protocol": p.name, "peer": self.neighbours.get(p.name, p.name), "state": p.state,
                     "info": p.info, "established": p.info.startswith("Established"), "since": p.since}
                    for p in protos.values() if p.proto == "BGP"]
        return {"bird": state, "pid": self.daemon.pid(), "as": self.asn, "route_reflector": self.route_reflector,
                "sessions": sessions, "config_error": self.config_error}
