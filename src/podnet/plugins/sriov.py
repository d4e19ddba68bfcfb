"""podnet-sriov: an SR-IOV virtual function into the pod (sriov-cni's config and behaviour).

    {"type": "podnet-sriov", "deviceID": "0000:af:06.0",     or runtimeConfig.deviceID (Multus/device plugin)
     "vlan": 100, "vlanQoS": 3, "vlanProto": "802.1q|802.1ad", "mac": "…" (or the mac capability, CNI_ARGS MAC),
     "spoofchk": "on|off", "trust": "on|off", "min_tx_rate": 0, "max_tx_rate": 100 (Mbps),
     "link_state": "auto|enable|disable", "ipam": {…},
     "sysfsRoot": "/sys", "dataDir": "/var/lib/cni/sriov", "vfRecorder": ""}

ADD: the VF is found in sysfs (its PF and index: net/sriov.py); a VF already held by a live pod is
refused; its state on the PF is saved, then what the config asks is set on the PF (IFLA_VF_*: VLAN,
MAC, rates, spoof check, trust, link state), then its netdev moves into the pod as CNI_IFNAME (its
own name kept in the link alias) with IPAM's addresses.  DEL puts back everything it changed — the
VF's settings on the PF, the netdev's name and namespace — from the saved state, so it works
after the pod's netns is gone too.  A VF without a netdev (bound to vfio-pci: DPDK) gets its PF
settings only.  `sysfsRoot` and `vfRecorder` (the PF's operations recorded in a file instead of
sent to hardware) are how this is tested on a machine without SR-IOV.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Any

from ..cni.errors import config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import DNS, Interface, Result, dns_from_dict
from ..net import link, netns, sriov
from ..net.errors import NetError, NetnsGone
from ..net.rtnl import Link, Rtnl, open_rtnl
from . import podlink, podside
from .common import check_mac, get_int, get_path, get_str, ipam_conf, requested_mac
from .host_device import PCI_RE

DEFAULT_DATA_DIR = "/var/lib/cni/sriov"


@dataclass(frozen=True)
class SriovConf:
    pci: str
    wanted: sriov.VfState                # the values asked for …
    fields: tuple[str, ...]              # … of these fields only
    mac: str
    has_ipam: bool
    dns: DNS
    sysfs: str
    data_dir: str
    recorder: str


def _on_off(c: dict[str, Any], key: str) -> bool | None:
    v = c.get(key)
    if v is None:
        return None
    if v not in ("on", "off"):
        raise config_error(key, f"must be on or off, not {v!r}")
    return bool(v == "on")


def parse_conf(req: Request) -> SriovConf:
    c = req.config
    pci = str(req.runtime_config.get("deviceID") or "") or get_str(c, "deviceID")
    if not pci:
        raise config_error("deviceID", "the VF's PCI address is required (or runtimeConfig.deviceID)")
    if not PCI_RE.match(pci):
        raise config_error("deviceID", f"{pci!r} is not a PCI address like 0000:af:06.0")
    if pci.count(":") == 1:
        pci = "0000:" + pci
    state, fields = sriov.VfState(), []
    if "vlan" in c:
        state.vlan = get_int(c, "vlan", 0, 0, 4094)
        fields.append("vlan")
    if "vlanQoS" in c:
        if "vlan" not in c:
            raise config_error("vlanQoS", "needs vlan")
        state.qos = get_int(c, "vlanQoS", 0, 0, 7)
        fields.append("qos")
    if "vlanProto" in c:
        state.proto = get_str(c, "vlanProto")
        if state.proto not in ("802.1q", "802.1ad"):
            raise config_error("vlanProto", f"must be 802.1q or 802.1ad, not {state.proto!r}")
        fields.append("proto")
    mac = requested_mac(req) or (check_mac(get_str(c, "mac"), "mac") if get_str(c, "mac") else "")
    if mac:
        state.mac = mac
        fields.append("mac")
    for key in ("spoofchk", "trust"):
        value = _on_off(c, key)
        if value is not None:
            setattr(state, key, value)
            fields.append(key)
    for key in ("min_tx_rate", "max_tx_rate"):
        if key in c:
            setattr(state, key, get_int(c, key, 0, 0, 2**31 - 1))
            fields.append(key)
    if state.max_tx_rate and state.min_tx_rate > state.max_tx_rate:
        raise config_error("min_tx_rate", f"{state.min_tx_rate} is above max_tx_rate {state.max_tx_rate}")
    if "link_state" in c:
        state.link_state = get_str(c, "link_state")
        if state.link_state not in sriov.LINK_STATES:
            raise config_error("link_state", f"must be auto, enable or disable, not {state.link_state!r}")
        fields.append("link_state")
    if "min_tx_rate" in fields or "max_tx_rate" in fields:      # the kernel sets both at once
        fields = [f for f in fields if f not in ("min_tx_rate", "max_tx_rate")] + ["min_tx_rate", "max_tx_rate"]
    return SriovConf(pci, state, tuple(fields), mac, ipam_conf(c) is not None, dns_from_dict(c.get("dns")),
                     get_path(c, "sysfsRoot", "/sys"), get_path(c, "dataDir", DEFAULT_DATA_DIR),
                     get_path(c, "vfRecorder"))


def _state_path(conf: SriovConf, req: Request) -> str:
    return os.path.join(conf.data_dir, f"{req.container_id}-{req.ifname}.json")


def _allocation_path(conf: SriovConf) -> str:
    return os.path.join(conf.data_dir, "pci", conf.pci)


def _write(path: str, doc: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(path + ".tmp", path)


def _refuse_if_taken(conf: SriovConf, req: Request) -> None:
    """A VF still held by a live pod (a DEL and an ADD reordered) is not taken again."""
    try:
        with open(_allocation_path(conf)) as f:
            holder = json.load(f)
    except (OSError, ValueError):
        return
    other = str(holder.get("netns", ""))
    if holder.get("container") != req.container_id and other and os.path.exists(other):
        raise config_error("deviceID", f"VF {conf.pci} is in use by container {holder.get('container')} ({other})")


def add(req: Request) -> Result:
    conf = parse_conf(req)
    try:
        vf = sriov.resolve(conf.sysfs, conf.pci)
    except NetError as e:
        raise config_error("deviceID", str(e)) from None
    _refuse_if_taken(conf, req)
    ops = sriov.ops(conf.recorder)
    original = ops.get(vf.pf, vf.index)
    _write(_state_path(conf, req), {"pci": conf.pci, "pf": vf.pf, "index": vf.index, "netdev": vf.netdev,
                                    "fields": list(conf.fields), "original": original.to_dict()})
    with contextlib.ExitStack() as undo:
        undo.callback(_forget, conf, req)
        if conf.fields:
            ops.set(vf.pf, vf.index, conf.wanted, conf.fields)
            undo.callback(podside.quietly, ops.set, vf.pf, vf.index, original, conf.fields)
        if vf.netdev:
            result = podlink.attach(req, _mover(vf, conf.mac, req.ifname), conf.has_ipam, conf.dns, unmake=_give_back)
        else:                                # DPDK: nothing moves; the VF is the pod's through its driver
            result = Result(req.cni_version)
        _write(_allocation_path(conf), {"container": req.container_id, "netns": req.netns})
        undo.pop_all()
    ifaces = tuple(dataclasses.replace(i, pci_id=conf.pci) if i.name == req.ifname else i for i in result.interfaces)
    return dataclasses.replace(result, interfaces=ifaces or (Interface(req.ifname, conf.mac, sandbox=req.netns,
                                                                         pci_id=conf.pci),))


def _mover(vf: sriov.Vf, mac: str, ifname: str) -> podlink.MakeLink:
    def make(host: Rtnl, pod: Rtnl, pod_fd: int) -> Link:
        dev = host.link(vf.netdev)
        if dev is None:
            raise config_error("deviceID", f"the VF's netdev {vf.netdev!r} is not in the host's network namespace")
        moved = link.move_into_pod(host, pod, pod_fd, dev, ifname)
        if mac:                         # the netdev's own (effective) MAC, as the PF's admin MAC
            pod.set_link(moved.index, state="down")
            pod.set_link(moved.index, address=mac)
            pod.set_link(moved.index, state="up")
            moved = pod.require_link(moved.name)
        return moved
    return make


def _give_back(pod: Rtnl, lk: Link) -> None:
    link.move_out_of_pod(pod, lk, host_netns_fd=None)


def _forget(conf: SriovConf, req: Request) -> None:
    for path in (_state_path(conf, req), _allocation_path(conf)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def delete(req: Request) -> None:
    """Everything ADD changed, put back from the saved state; the netns may be gone."""
    conf = parse_conf(req)
    try:
        with open(_state_path(conf, req)) as f:
            saved = json.load(f)
    except (OSError, ValueError):
        saved = None
    gone = not req.netns
    if not gone:
        try:
            with netns.opened(req.netns):
                pass
        except NetnsGone:
            gone = True
    podlink.detach(req, conf.has_ipam, unmake=_give_back)
    if saved is not None:
        fields = tuple(saved.get("fields") or ())
        if fields:
            sriov.ops(conf.recorder).set(saved["pf"], int(saved["index"]), sriov.VfState.from_dict(saved["original"]),
                                         fields)
        if gone and saved.get("netdev"):
            podside.quietly(_rename_returned, str(saved["netdev"]))
    _forget(conf, req)


def _rename_returned(name: str) -> None:
    """The pod's netns is gone: a physical VF netdev came back under another name (its alias keeps ours)."""
    with open_rtnl() as host:
        for lk in host.links():
            if lk.alias == name and lk.name != name and host.link(name) is None:
                host.set_link(lk.index, state="down")
                host.set_link(lk.index, ifname=name)


def check(req: Request) -> None:
    conf = parse_conf(req)
    podlink.check(req, "", conf.has_ipam, lambda host, pod, lk: None)


status, gc = podlink.ipam_status_and_gc(lambda req: parse_conf(req).has_ipam)
PLUGIN = Plugin("sriov", add, delete, check, status, gc)
