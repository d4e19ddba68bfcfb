"""The datastores a node can take its cluster view from, chosen by name (DATASTORES):

  etcd        podnet's own: the cluster IPAM's blocks (or a leased host-local subnet) and the
              node registry, in etcd
  kubernetes  the API server: Node objects (spec.podCIDRs from the controller manager,
              InternalIP), podnet's annotations, Pods for the leak GC; no etcd of podnet's

Each gives the node the same three things: its `Peers` (nodes, pod CIDRs, watch), its
`NodeNetwork` (how its pods get addresses, its conflist), and `prepare()` — what must hold
before the node joins (its subnet claimed, its podCIDRs assigned) — retried until it does.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from .config import ConfigError, NodeConfig
from .nodenet import NodeNetwork, Underlay
from .peers import Peers

log = logging.getLogger(__name__)


class Datastore(Protocol):
    peers: Peers
    network: NodeNetwork

    def underlay(self) -> str: ...
    def prepare(self) -> None: ...
    def announce(self, reason: str, message: str) -> None: ...


class EtcdDatastore:
    def __init__(self, cfg: NodeConfig, node: str) -> None:
        from ..ipam.cluster import ClusterIpam
        from ..ipam.etcdkv import EtcdKV
        from ..ipam.registry import NodeRegistry
        from .peers import EtcdPeers
        if not cfg.etcd or not cfg.underlay_addr:
            raise ConfigError("routing with the etcd datastore needs etcd and underlay-addr")
        if cfg.ipam_mode == "host-local" and not cfg.cluster_cidr:
            raise ConfigError("ipam-mode host-local needs cluster-cidr (the CIDR node subnets come from)")
        self.cfg = cfg
        self.ipam = ClusterIpam(EtcdKV(cfg.etcd, tls=_tls(cfg)), node, cfg.etcd_prefix)
        tls_keys = {k: v for k, v in (("etcdCAFile", cfg.etcd_ca_file), ("etcdCertFile", cfg.etcd_cert_file),
                                      ("etcdKeyFile", cfg.etcd_key_file)) if v}
        self.network = NodeNetwork(cfg.network, cfg.ipam_mode, cfg.cidrs(), cfg.etcd, self.ipam.prefix, cfg.socket,
                                   cfg.block_size, cfg.node_subnet_size, cfg.cni_conf_dir, cfg.ipam_data_dir,
                                   etcd_tls=tls_keys, underlay=underlay_of(cfg))
        self.peers: Peers = EtcdPeers(NodeRegistry(self.ipam), cfg.lease_ttl, cfg.reclaim_after)
        if cfg.ipam_mode == "neutron":
            from .neutronpeers import NeutronBlocks, neutron_ipam_keys
            self.network.neutron = neutron_ipam_keys(cfg)
            self.network.node_address = cfg.underlay_addr
            self.peers = NeutronBlocks(self.peers, cfg, node)
        self.kube: Any = None
        if cfg.network_policy or cfg.attachments:   # policies, pods, NADs come from the API server
            from .kubepeers import KubePeers
            self.kube = KubePeers(node, cfg.kubeconfig, watch_timeout=cfg.watch_timeout, relay=cfg.relay,
                                  relay_ca=cfg.relay_ca)

    def underlay(self) -> str:
        return self.cfg.underlay_addr

    def prepare(self) -> None:
        self.network.claim(self.ipam)

    def announce(self, reason: str, message: str) -> None:
        """etcd has no events: the log says it (and the Node's Events, when the API is there)."""
        log.info("%s: %s", reason, message)
        if self.kube is not None:
            try:
                self.kube.event(reason, message)
            except Exception as e:  # noqa: BLE001 - an Event is a courtesy; the log has it
                log.debug("event %s not sent: %s", reason, e)


class KubeDatastore:
    def __init__(self, cfg: NodeConfig, node: str) -> None:
        from .kubepeers import KubePeers
        self.cfg, self.node = cfg, node
        self.network = NodeNetwork(cfg.network, "host-local", cfg.cidrs(), [], "", cfg.socket,
                                   conf_dir=cfg.cni_conf_dir, data_dir=cfg.ipam_data_dir)
        self.kube = KubePeers(node, cfg.kubeconfig, gc=self._release_leaks, gc_interval=cfg.leak_gc_interval,
                              watch_timeout=cfg.watch_timeout, relay=cfg.relay, relay_ca=cfg.relay_ca)
        self.peers: Peers = self.kube

    def _release_leaks(self, live: set[str]) -> None:
        from .leakgc import release_leaked
        if self.cfg.leak_grace > 0 and self.network.subnets:
            release_leaked(self.cfg.ipam_data_dir or "/var/lib/cni/networks", self.cfg.network,
                           self.network.subnets, live, self.cfg.leak_grace)

    def underlay(self) -> str:
        addr = self.cfg.underlay_addr or self.kube.internal_ip()
        if not addr:
            raise ConfigError(f"node {self.node} has no InternalIP; give underlay-addr")
        return addr

    def prepare(self) -> None:
        self.network.subnets = self.kube.my_pod_cidrs()

    def announce(self, reason: str, message: str) -> None:
        self.kube.event(reason, message)


def underlay_of(cfg: NodeConfig) -> Underlay | None:
    """pod-network underlay's settings for the node's network (None: routed)."""
    if cfg.pod_network != "underlay":
        return None
    import ipaddress
    return Underlay(cfg.underlay_link, cfg.underlay_interface, [ipaddress.ip_network(n) for n in cfg.underlay_subnet],
                    [ipaddress.ip_address(g) for g in cfg.underlay_gateway],
                    [ipaddress.ip_network(n) for n in cfg.service_cidr])


def _tls(cfg: NodeConfig):  # type: ignore[no-untyped-def]
    if not cfg.etcd_ca_file:
        return None
    from ..ipam.etcdkv import TLSFiles

    def read(path: str) -> bytes | None:
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ConfigError(f"etcd TLS file {path}: {e.strerror}") from None
    return TLSFiles(read(cfg.etcd_ca_file) or b"", read(cfg.etcd_cert_file), read(cfg.etcd_key_file))


DATASTORES: dict[str, Callable[[NodeConfig, str], Datastore]] = {"etcd": EtcdDatastore, "kubernetes": KubeDatastore}
