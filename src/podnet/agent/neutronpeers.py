"""ipam-mode neutron: where the node view's blocks come from when Neutron holds the pods' ports.

The nodes still register in etcd (addresses, liveness); the blocks of pod addresses are Neutron's
(ipam/neutron.py: a podnet:block port per claimed block, its description naming the node).  The
underlay backend needs them — a Service answer crossing nodes is routed block → node in the legs'
table — so `owners()` adds Neutron's blocks to the etcd view.  Neutron has no watch: a thread reads
the block ports every POLL seconds and wakes the routing loop when they changed (one list request
per node per POLL: at a thousand nodes that is ~300 requests/s on Neutron — publishing claims in
etcd instead is the next step at that scale)."""
from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any

from ..ipam.neutron import OWNER_BLOCK, parse_description
from .config import NodeConfig
from .peers import IPNet, Peers

log = logging.getLogger(__name__)

POLL = 3.0


def neutron_ipam_keys(cfg: NodeConfig) -> dict[str, Any]:
    """The podnet-neutron-ipam keys the agent's conflist carries (credentials by file only)."""
    out: dict[str, Any] = {"network": cfg.neutron_network, "addressPairs": cfg.neutron_address_pairs}
    for key, value in (("neutronUrl", cfg.neutron_url), ("authUrl", cfg.neutron_auth_url),
                       ("credentialsFile", cfg.neutron_credentials_file), ("subnet", cfg.neutron_subnet)):
        if value:
            out[key] = value
    if cfg.neutron_pool_size:
        out["poolSize"] = cfg.neutron_pool_size
    return out


class NeutronBlocks:
    """The etcd peers, their owners() joined by Neutron's node blocks."""

    def __init__(self, inner: Peers, cfg: NodeConfig, node: str) -> None:
        self.inner, self.cfg, self.node = inner, cfg, node
        self._blocks: dict[IPNet, str] = {}
        self._polled = threading.Event()
        self._lock = threading.Lock()
        self._api: Any = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def owners(self) -> dict[IPNet, str]:
        out = dict(self.inner.owners())
        if not self._polled.is_set():
            self.poll()
        with self._lock:
            out.update(self._blocks)
        return out

    def poll(self) -> bool:
        """Read Neutron's blocks; True when they changed (Neutron away: the last view is kept)."""
        try:
            blocks = self._read()
        except Exception as e:  # noqa: BLE001 - Neutron away: keep the last view (routes stay)
            log.warning("neutron blocks: %s (keeping the last view)", e)
            return False
        finally:
            self._polled.set()
        with self._lock:
            changed, self._blocks = blocks != self._blocks, blocks
        return changed

    def watch(self, wake: Callable[[], None]) -> Callable[[], None]:
        stop_inner = self.inner.watch(wake)
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(POLL):
                if self.poll():
                    wake()
        threading.Thread(target=run, name="neutron-blocks", daemon=True).start()

        def stop_both() -> None:
            stop.set()
            stop_inner()
        return stop_both

    def _read(self) -> dict[IPNet, str]:
        from ..ipam.neutron import NeutronIpam, Settings
        from ..ipam.neutron_api import NeutronAPI
        from ..plugins.neutron_ipam import credentials_from_file
        if self._api is None:
            creds = (credentials_from_file({"credentialsFile": self.cfg.neutron_credentials_file},
                                           self.cfg.neutron_auth_url) if self.cfg.neutron_auth_url else None)
            self._api = NeutronAPI(self.cfg.neutron_url, creds)
        api = self._api
        ipam = NeutronIpam(api, Settings(network=self.cfg.neutron_network, subnet=self.cfg.neutron_subnet,
                                         node=self.node, cni_network=self.cfg.network))
        net = ipam.subnet().network_id
        out: dict[IPNet, str] = {}
        for d in api.list("port", [("device_owner", OWNER_BLOCK), ("network_id", net)]):
            desc = parse_description(str(d.get("description", "")))
            if desc.get("block") and desc.get("node"):
                out[ipaddress.ip_network(desc["block"])] = desc["node"]
        return out
