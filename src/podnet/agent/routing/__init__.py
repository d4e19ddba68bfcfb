"""Cross-node routing: the reconcile loop (loop.py) and the backends it drives, chosen by name
from BACKENDS (base.py says what a backend is)."""
from __future__ import annotations

from .base import Backend, NodeIdentity, Reconcile
from .bgp import Bgp
from .hostgw import HostGw
from .loop import RoutingAgent
from .underlay import Underlay
from .vxlan import Vxlan

BACKENDS: dict[str, type] = {"host-gw": HostGw, "vxlan": Vxlan, "bgp": Bgp, "underlay": Underlay}

__all__ = ["BACKENDS", "Backend", "Bgp", "HostGw", "NodeIdentity", "Reconcile", "RoutingAgent", "Underlay", "Vxlan"]
