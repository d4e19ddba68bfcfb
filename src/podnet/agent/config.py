"""`NodeConfig`: every setting of a node's agent, typed, parsed once — from a config file
(`--config /etc/podnet/agent.yaml`: YAML or JSON, the DaemonSet's ConfigMap), then from
command-line flags, which win.  Keys in a file are the flags' names (`cluster-cidr`, or
`cluster_cidr`); list settings take a list or a comma-separated string ("v4,v6" from a
ConfigMap).  An unknown key or a wrong type is an error naming the key: an agent must not
start with a setting it silently ignored.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import socket as _socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SOCKET = "/run/podnet/agent.sock"
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names it."""


@dataclass
class NodeConfig:
    # the agent's own service
    socket: str = DEFAULT_SOCKET
    state_dir: str = "/var/lib/podnet"
    log_file: str = ""
    log_level: str = "INFO"
    request_timeout: float = 50.0
    # the node and its cross-node routing ("" = no routing: a single-node agent)
    node: str = ""
    routing: str = ""
    underlay_addr: str = ""
    vxlan_vni: int = 1
    vxlan_port: int = 8472
    route_interval: float = 10.0
    encryption: str = ""               # "wireguard": pod traffic between nodes encrypted (any backend)
    wireguard_port: int = 51820
    wireguard_run_dir: str = ""        # wireguard-go's socket dir if not /var/run/wireguard (several nodes, one host)
    wireguard_go: str = "agent"        # agent: the agent starts/restarts it; external: another container runs it
    bgp_as: int = 64512                # routing bgp: this node's AS (the cluster's, unless overridden per node)
    bgp_route_reflector: bool = False  # routing bgp: this node reflects routes (then others peer only with reflectors)
    bgp_peers: list[str] = field(default_factory=list)   # routing bgp: external peers, ADDR/AS[/PASSWORD]
    bgp_hold_time: int = 90
    bgp_graceful_restart_time: int = 120
    drain_on_stop: bool = False        # routing bgp: SIGTERM shuts BIRD down (peers withdraw at once)
    bird: str = "agent"                # routing bgp: agent starts/restarts BIRD; external: another container runs it
    no_nat_cidr: list[str] = field(default_factory=list)  # cluster CIDRs (pools) the network routes natively: no masquerade
    trace_port: int = 9473             # GET /trace/hop on the underlay address (podnet trace); 0: off
    # the datastore
    datastore: str = "etcd"
    kubeconfig: str = ""
    leak_grace: float = 600.0
    leak_gc_interval: float = 60.0
    watch_timeout: int = 300           # kubernetes datastore: seconds before the API server ends a watch
    relay: str = ""                    # a podnet relay's URL: the cluster-wide lists and watches come from it
    relay_ca: str = ""                 # the CA of the relay's serving certificate (https; default: the API's)
    network_policy: bool = False       # kubernetes datastore: enforce NetworkPolicy (table inet podnet_policy)
    attachments: bool = False          # pods' k8s.v1.cni.cncf.io/networks (NetworkAttachmentDefinitions): API access
    etcd: list[str] = field(default_factory=list)
    etcd_prefix: str = "/podnet/"
    etcd_ca_file: str = ""
    etcd_cert_file: str = ""
    etcd_key_file: str = ""
    lease_ttl: int = 30                # renewed every ttl/3 = the default route-interval: one wakeup per interval at rest
    reclaim_after: float = 300.0
    # where pods live: routed (a veth to the node, routes or tunnels between nodes) or underlay
    # (eth0 a macvlan/ipvlan child of the node's NIC on the datacenter network, a leg to the node)
    pod_network: str = "routed"
    underlay_interface: str = ""       # underlay: the NIC pods hang off (default: the one holding underlay-addr)
    underlay_link: str = "macvlan"     # underlay: macvlan | ipvlan
    underlay_subnet: list[str] = field(default_factory=list)    # underlay: the datacenter subnet(s) pods are on
    underlay_gateway: list[str] = field(default_factory=list)   # underlay: its gateway(s): the pods' default route
    service_cidr: list[str] = field(default_factory=list)       # underlay: routed through the node (the leg)
    # the pods' addresses and the node's conflist
    cluster_cidr: list[str] = field(default_factory=list)
    ipam_mode: str = "cluster"                 # cluster | host-local | neutron (underlay: pods' ports in Neutron)
    neutron_url: str = ""                      # neutron: the endpoint, or
    neutron_auth_url: str = ""                 # … keystone v3 with neutron-credentials-file
    neutron_credentials_file: str = ""
    neutron_network: str = ""                  # neutron: the network (ID or name) pods and nodes are on
    neutron_subnet: str = ""
    neutron_address_pairs: str = "cidr"        # cidr (a pair per node block of cluster-cidr) | per-ip | none
    neutron_pool_size: int = 0                 # ready ports the agent keeps per node
    block_size: int = 26
    node_subnet_size: int = 24
    cni_conf_dir: str = ""
    network: str = "podnet"
    ipam_data_dir: str = ""

    # ------------------------------------------------------------ loading
    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def load(cls, path: str = "", overrides: Mapping[str, Any] | None = None) -> NodeConfig:
        """Defaults, then the file at `path` (if any), then `overrides` (flags given)."""
        values: dict[str, Any] = {}
        if path:
            values.update(read_file(path))
        values.update({k.replace("-", "_"): v for k, v in (overrides or {}).items()})
        cfg = cls()
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, raw in values.items():
            if key not in types:
                raise ConfigError(f"{key.replace('_', '-')}: unknown setting")
            setattr(cfg, key, _coerce(key, str(types[key]), raw))
        cfg.validate()
        return cfg

    def validate(self) -> None:
        from .datastores import DATASTORES
        from .routing import BACKENDS
        # any case (debug, Debug, DEBUG): the logging module wants upper case
        self.log_level = self.log_level.upper()
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(f"log-level: {self.log_level.lower()!r} is not one of {', '.join(LOG_LEVELS).lower()}")
        if self.routing and self.routing not in BACKENDS:
            raise ConfigError(f"routing: {self.routing!r} is not one of {', '.join(sorted(BACKENDS))}")
        if self.encryption not in ("", "wireguard"):
            raise ConfigError(f"encryption: {self.encryption!r} is not wireguard (or empty: none)")
        if self.encryption and not self.routing:
            raise ConfigError("encryption needs routing (it encrypts the traffic between nodes)")
        if self.wireguard_go not in ("agent", "external"):
            raise ConfigError(f"wireguard-go: {self.wireguard_go!r} is not agent or external")
        if not 0 < self.wireguard_port < 65536:
            raise ConfigError(f"wireguard-port: {self.wireguard_port} is not a UDP port")
        if self.bird not in ("agent", "external"):
            raise ConfigError(f"bird: {self.bird!r} is not agent or external")
        if self.routing == "bgp":
            from .routing.bgp import parse_peer
            for peer in self.bgp_peers:
                try:
                    parse_peer(peer)
                except ValueError as e:
                    raise ConfigError(f"bgp-peers: {e}") from None
            if not 0 < self.bgp_as < 2 ** 32:
                raise ConfigError(f"bgp-as: {self.bgp_as} is not an AS number")
            if not (self.bgp_hold_time == 0 or self.bgp_hold_time >= 3):
                raise ConfigError(f"bgp-hold-time: {self.bgp_hold_time} (0, or at least 3 seconds)")
        if self.datastore not in DATASTORES:
            raise ConfigError(f"datastore: {self.datastore!r} is not one of {', '.join(sorted(DATASTORES))}")
        if self.ipam_mode not in ("cluster", "host-local", "neutron"):
            raise ConfigError(f"ipam-mode: {self.ipam_mode!r} is not cluster, host-local or neutron")
        if self.ipam_mode == "neutron":
            self._validate_neutron()
        if self.relay:
            if not self.relay.startswith(("http://", "https://")):
                raise ConfigError(f"relay: {self.relay!r} is not an http:// or https:// URL")
        if self.network_policy and self.datastore != "kubernetes" and self.pod_network != "underlay":
            raise ConfigError("network-policy needs the kubernetes datastore, or pod-network underlay (policies, "
                              "pods and namespaces come from the API server)")
        self._validate_pod_network()
        for c in self.no_nat_cidr:
            if c not in self.cluster_cidr:
                raise ConfigError(f"no-nat-cidr: {c} is not one of cluster-cidr ({', '.join(self.cluster_cidr)})")
        if self.cni_conf_dir and not self.cluster_cidr:
            raise ConfigError("cni-conf-dir needs cluster-cidr (the pods' address space)")
        self.cidrs()

    def _validate_pod_network(self) -> None:
        if self.pod_network not in ("routed", "underlay"):
            raise ConfigError(f"pod-network: {self.pod_network!r} is not routed or underlay")
        if self.pod_network == "routed":
            if self.routing == "underlay":
                raise ConfigError("routing: underlay is pod-network underlay's (set pod-network: underlay)")
            return
        if self.routing not in ("", "underlay"):
            raise ConfigError(f"routing: {self.routing!r} has nothing to route in pod-network underlay (pods are "
                              "on the datacenter network: it carries their traffic between nodes)")
        self.routing = "underlay"
        if self.encryption:
            raise ConfigError("encryption: not with pod-network underlay (pods talk over the datacenter network "
                              "directly; no node-to-node tunnel carries their traffic)")
        if self.datastore == "kubernetes":
            raise ConfigError("datastore: kubernetes cannot give underlay addresses (a Node's podCIDR is not on "
                              "the datacenter subnet): use etcd (the cluster IPAM, or host-local ranges per node)")
        if self.underlay_link not in ("macvlan", "ipvlan"):
            raise ConfigError(f"underlay-link: {self.underlay_link!r} is not macvlan or ipvlan")
        nets = self._networks("underlay-subnet", self.underlay_subnet)
        gws = self._addresses("underlay-gateway", self.underlay_gateway)
        if not nets:
            raise ConfigError("underlay-subnet: pod-network underlay needs the datacenter subnet(s) pods are on")
        for gw in gws:
            if not any(gw in n for n in nets):
                raise ConfigError(f"underlay-gateway: {gw} is not in underlay-subnet ({', '.join(map(str, nets))})")
        for c in self.cidrs():
            if not any(c.version == n.version and c.subnet_of(n) for n in nets):   # type: ignore[arg-type]
                raise ConfigError(f"cluster-cidr: {c} (the pods' pool) is not inside underlay-subnet "
                                  f"({', '.join(map(str, nets))})")
            for gw in gws:
                if gw in c:      # everything in the pool is taken for a pod: the node would not masquerade to it
                    raise ConfigError(f"cluster-cidr: {c} (the pods' pool) holds the gateway {gw}: the pool must "
                                      "hold pods' addresses only")
        self._networks("service-cidr", self.service_cidr)
        if self.cni_conf_dir and not self.service_cidr:
            raise ConfigError("service-cidr: pod-network underlay routes the service CIDR through the node: give it")

    def _validate_neutron(self) -> None:
        if self.pod_network != "underlay":
            raise ConfigError("ipam-mode: neutron gives addresses on the VMs' network: set pod-network underlay")
        if not self.neutron_network:
            raise ConfigError("neutron-network: the Neutron network (ID or name) is required with ipam-mode neutron")
        if not self.neutron_url and not self.neutron_auth_url:
            raise ConfigError("neutron-url: give the Neutron endpoint (or neutron-auth-url, keystone v3)")
        if self.neutron_auth_url and not self.neutron_credentials_file:
            raise ConfigError("neutron-credentials-file: neutron-auth-url needs it (a Secret, never the ConfigMap)")
        if self.neutron_address_pairs not in ("cidr", "per-ip", "none"):
            raise ConfigError(f"neutron-address-pairs: {self.neutron_address_pairs!r} is not cidr, per-ip or none")
        if self.neutron_address_pairs == "cidr" and not any(ipaddress.ip_network(c).version == 4
                                                             for c in self.cluster_cidr):
            raise ConfigError("cluster-cidr: neutron-address-pairs cidr takes node blocks from it: give it")

    @staticmethod
    def _networks(key: str, values: list[str]) -> list[IPNet]:
        try:
            return [ipaddress.ip_network(v) for v in values]
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None

    @staticmethod
    def _addresses(key: str, values: list[str]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        try:
            return [ipaddress.ip_address(v) for v in values]
        except ValueError as e:
            raise ConfigError(f"{key}: {e}") from None

    def cidrs(self) -> list[IPNet]:
        try:
            return [ipaddress.ip_network(c) for c in self.cluster_cidr]
        except ValueError as e:
            raise ConfigError(f"cluster-cidr: {e}") from None

    def node_name(self) -> str:
        return self.node or os.environ.get("NODE_NAME") or _socket.gethostname()


def read_file(path: str) -> dict[str, Any]:
    """A YAML or JSON mapping of settings (JSON is YAML: one parser for both)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"config {path}: {e.strerror}") from None
    try:
        import yaml  # PyYAML (lightkube's dependency)
        data = yaml.safe_load(text)
    except ImportError:
        data = json.loads(text)
    except Exception as e:  # noqa: BLE001 - yaml's errors have no common public root
        raise ConfigError(f"config {path}: not YAML/JSON: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: must be a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(key: str, typ: str, raw: Any) -> Any:
    name = key.replace("_", "-")
    if typ.startswith("list"):
        items = [raw] if isinstance(raw, str) else raw
        if isinstance(items, (list, tuple)) and all(isinstance(x, str) for x in items):
            return [part.strip() for x in items for part in x.split(",") if part.strip()]
        raise ConfigError(f"{name}: must be a list of strings or a comma-separated string, not {raw!r}")
    if raw is None:
        raise ConfigError(f"{name}: must not be empty")
    if typ == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "yes", "no", "1", "0", "on", "off"):
            return raw.lower() in ("true", "yes", "1", "on")
        raise ConfigError(f"{name}: must be true or false, not {raw!r}")
    try:
        if typ == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            return int(raw)
        if typ == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: must be a {'number' if typ == 'float' else 'whole number'}, not {raw!r}") from None
    if not isinstance(raw, (str, int, float)) or isinstance(raw, bool):
        raise ConfigError(f"{name}: must be a string, not {raw!r}")
    return str(raw)
