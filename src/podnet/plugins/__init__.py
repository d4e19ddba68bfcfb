"""Every plugin type podnet serves: an explicit map, no import side effects."""
from __future__ import annotations

from ..cni.skel import Plugin
from . import (
    bandwidth,
    bridge,
    cluster_ipam,
    dhcp,
    dummy,
    firewall,
    host_device,
    host_local,
    ipvlan,
    leg,
    loopback,
    macvlan,
    pod,
    portmap,
    ptp,
    sbr,
    sriov,
    static,
    tuning,
    vlan,
)

REGISTRY: dict[str, Plugin] = {
    "bridge": bridge.PLUGIN,
    "host-local": host_local.PLUGIN,
    "static": static.PLUGIN,
    "loopback": loopback.PLUGIN,
    "ptp": ptp.PLUGIN,
    "macvlan": macvlan.PLUGIN,
    "ipvlan": ipvlan.PLUGIN,
    "vlan": vlan.PLUGIN,
    "host-device": host_device.PLUGIN,
    "dummy": dummy.PLUGIN,
    "portmap": portmap.PLUGIN,
    "bandwidth": bandwidth.PLUGIN,
    "tuning": tuning.PLUGIN,
    "firewall": firewall.PLUGIN,
    "sbr": sbr.PLUGIN,
    "leg": leg.PLUGIN,
    "sriov": sriov.PLUGIN,
    "cluster-ipam": cluster_ipam.PLUGIN,
    "dhcp": dhcp.PLUGIN,
    "podnet": pod.PLUGIN,
}
