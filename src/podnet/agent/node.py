"""A node's agent, built from one `NodeConfig`: the DHCP lease keeper, and — with routing on —
the datastore (DATASTORES), the routing backend (BACKENDS), the node's masquerade and
forwarding, readiness, and the conflist written once the node is ready.  `run(cfg)` is the
whole `podnet agent`; the CLI only parses arguments.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from .config import NodeConfig

log = logging.getLogger(__name__)
POD_INTERFACE = "eth0"      # the pod's interface kubelet's runtime asks for (CNI_IFNAME)


def backend_options(cfg: NodeConfig) -> dict[str, Any]:
    """The settings of the configured backend (each backend takes only its own)."""
    if cfg.routing == "vxlan":
        return {"vni": cfg.vxlan_vni, "port": cfg.vxlan_port}
    if cfg.routing == "underlay":
        return {"interface": cfg.underlay_interface, "link": cfg.underlay_link, "pools": cfg.cidrs()}
    if cfg.routing == "bgp":
        return {"state_dir": cfg.state_dir, "asn": cfg.bgp_as, "route_reflector": cfg.bgp_route_reflector,
                "peers": tuple(cfg.bgp_peers), "hold_time": cfg.bgp_hold_time,
                "graceful_restart_time": cfg.bgp_graceful_restart_time, "drain_on_stop": cfg.drain_on_stop,
                "external": cfg.bird == "external"}
    return {}


class Node:
    """The routing half of an agent: join, routes, masquerade, readiness, conflist."""

    def __init__(self, cfg: NodeConfig) -> None:
        from .datastores import DATASTORES
        from .routing import BACKENDS, NodeIdentity, RoutingAgent
        self.cfg = cfg
        self.name = cfg.node_name()
        self.store = DATASTORES[cfg.datastore](cfg, self.name)
        underlay = self.store.underlay()
        me = NodeIdentity(self.name, ipaddress.ip_address(underlay))
        self.backend = BACKENDS[cfg.routing](me, **backend_options(cfg))
        if cfg.encryption == "wireguard":
            from .routing.wireguard import WireGuard
            self.backend = WireGuard(me, self.backend, cfg.state_dir, cfg.wireguard_port, cfg.wireguard_run_dir,
                                     os.path.join(cfg.state_dir, "wireguard", "wireguard-go.log"),
                                     external=cfg.wireguard_go == "external")
        self.routing = RoutingAgent(self.store.peers, self.backend, underlay, heartbeat=cfg.lease_ttl / 3,
                                    interval=cfg.route_interval, on_ready=self._routed, prepare=self.store.prepare,
                                    on_fail=self._failed, on_pass=self._passed)
        self.policy: Any = None
        self._routing_agent: Any = None
        self._stop_trace: Callable[[], None] | None = None
        self._written = False
        self._ready_lock = threading.Lock()
        if cfg.network_policy:
            from .policy.node import NodePolicy
            self.policy = NodePolicy(self.store, self.name, cfg.state_dir, cfg.watch_timeout, on_synced=self._policy_synced,
                                     pod_interface=POD_INTERFACE if cfg.pod_network == "underlay" else "")

    def start(self) -> None:
        from ..net import masq, sysctl
        from . import readiness
        if self.cfg.attachments:
            from ..dispatch import attachments
            from .kubeattach import KubeAttachments
            kube = self.store.kube         # type: ignore[attr-defined]
            attachments.install(KubeAttachments(kube.client, kube))
            self.store.network.attachments = True
        cidrs = self.cfg.cidrs()
        if self.store.network.underlay is not None:
            # the pods are on the datacenter network: their addresses are routable, nothing to masquerade
            self.store.network.underlay.interface = self.backend.interface
        elif cidrs:
            masq.set_cluster_masquerade(cidrs, keep_source=[c for c in cidrs if str(c) in self.cfg.no_nat_cidr])
        for fam in {c.version for c in cidrs}:     # routed: pods' traffic; underlay: what their legs carry
            sysctl.ensure("net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding", 1)
        readiness.not_ready(f"joining the cluster ({self.cfg.datastore} datastore)")
        if self.policy is not None:
            self.policy.start()
        else:
            from .policy.node import remove_stale_table
            remove_stale_table()
        self.routing.start()
        self._start_trace()

    def _start_trace(self) -> None:
        """GET /trace/hop on the agent's socket, and on the node's address for other nodes' CLIs."""
        from . import server, trace
        view = trace.NodeView(self.name, self.store.underlay(), self.cfg.cidrs(), self.policy,
                              getattr(self.backend, "status", None) if self.cfg.encryption else None,
                              "bgp" if self.cfg.routing == "bgp" else "host-gw",
                              [c for c in self.cfg.cidrs() if str(c) in self.cfg.no_nat_cidr])
        server.GET_HANDLERS["/trace/hop"] = lambda q: trace.handle(view, q)
        for b in (self.backend, getattr(self.backend, "inner", None)):     # /wireguard, /bgp (both: bgp encrypted)
            status, path = getattr(b, "status", None), getattr(b, "status_path", "")
            if status is not None and path:
                server.GET_HANDLERS[path] = (lambda fn: lambda _q: (200, fn()))(status)
        if self.cfg.trace_port:
            from .trace_server import serve
            try:
                self._stop_trace = serve(self.store.underlay(), self.cfg.trace_port, server.GET_HANDLERS["/trace/hop"])
            except OSError as e:          # the port is taken: traces from other nodes stop here
                log.warning("trace endpoint %s:%d: %s", self.store.underlay(), self.cfg.trace_port, e)

    def stop(self) -> None:
        if self._stop_trace is not None:
            self._stop_trace()
        self.routing.stop()
        if self.policy is not None:
            self.policy.stop()     # the table stays: pods stay policed while no agent runs

    def _passed(self, _result: Any) -> None:
        """After every pass: whether the datastore can still be followed (readiness: degraded)."""
        from . import readiness
        troubles = [str(getattr(self.store.peers, "trouble", "") or "")]
        if self.policy is not None:
            troubles.append(self.policy.trouble)
        readiness.set_degraded("; ".join(t for t in troubles if t))

    def _routed(self, agent: Any) -> None:
        self._routing_agent = agent
        self._ready()

    def _policy_synced(self) -> None:
        if self._routing_agent is not None:
            self._ready()

    def _failed(self, why: str) -> None:
        from . import readiness
        readiness.not_ready(f"joining the cluster ({self.cfg.datastore} datastore): {why}")

    def _ready(self) -> None:
        """Routes are in place — and, with NetworkPolicy on, the policies have been read (kubelet
        starts no pod before the conflist exists, so none starts before its policy is known)."""
        from . import readiness
        if self.policy is not None and not self.policy.engine.ready:
            readiness.not_ready("reading the cluster's NetworkPolicies, pods and namespaces")
            return
        with self._ready_lock:
            if self._written:
                return
            self._written = True
        net = self.store.network
        if self.cfg.cni_conf_dir:
            net.write_conflist(self.name, self._routing_agent.pod_mtu())
        readiness.set_ready()
        self.store.announce("PodnetReady", f"podnet: pod network ready ({self.cfg.routing}, pod CIDRs "
                                           f"{', '.join(map(str, net.subnets))})")


def configure_logging(cfg: NodeConfig) -> None:
    kw: dict[str, Any] = {"filename": cfg.log_file} if cfg.log_file else {"stream": sys.stderr}
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", **kw)
    for chatty in ("httpx", "httpx2", "httpcore"):   # one INFO line per API request otherwise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


SWITCH_INTERVAL_MS = 5.0       # the interpreter's own default; PODNET_SWITCH_INTERVAL_MS overrides (bench A/B)


def switch_interval() -> float:
    """Seconds a thread may hold the interpreter lock while another waits for it (sys.setswitchinterval)."""
    text = os.environ.get("PODNET_SWITCH_INTERVAL_MS", "")
    try:
        ms = float(text) if text else SWITCH_INTERVAL_MS
    except ValueError:
        ms = SWITCH_INTERVAL_MS
    return max(ms, 0.05) / 1000


def run(cfg: NodeConfig) -> int:
    """`podnet agent`: serve CNI requests until SIGTERM; pods and routes stay when it stops."""
    sys.setswitchinterval(switch_interval())
    from ..dhcp.keeper import LeaseKeeper
    from ..dhcp.keeper import install as install_keeper
    from .server import serve
    configure_logging(cfg)
    keeper = LeaseKeeper(cfg.state_dir)
    install_keeper(keeper)
    keeper.start()        # podnet-dhcp leases of running pods: renewed from now on
    from ..ipam import neutron_pool
    ports = neutron_pool.PoolKeeper()
    neutron_pool.install(ports)
    ports.start()         # podnet-neutron-ipam's ready ports (idle until a config asks for poolSize)
    node = Node(cfg) if cfg.routing else None
    if node is not None:
        node.start()
    try:
        serve(cfg.socket, cfg.request_timeout)
    finally:
        if node is not None:
            node.stop()
        keeper.stop()
        ports.stop()
    return 0
