"""SR-IOV virtual functions: where a VF is (sysfs), what its PF says of it, and how it is set.

  resolve(root, pci)   the VF's PF netdev, its index on that PF and its own netdev, read from
                       <root>/bus/pci/devices/<vf>/physfn, <pf>/virtfnN and …/net/ — the same tree
                       the kernel exposes (root is /sys; tests pass a fake tree, as sriov-cni's do)
  VfOps                the PF's view of its VFs (IFLA_VFINFO_LIST) and its setters (IFLA_VF_*):
                       NetlinkVfOps in production (net/vfnl.py), RecordingVfOps where there is no
                       hardware — a JSON file holding each VF's state and every call made, so a
                       test (or a runtime tier without SR-IOV) can check exactly what was set
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from typing import Protocol

from .errors import NetError

FIELDS = ("vlan", "qos", "proto", "mac", "spoofchk", "trust", "min_tx_rate", "max_tx_rate", "link_state")
LINK_STATES = {"auto": 0, "enable": 1, "disable": 2}


@dataclass
class VfState:
    vlan: int = 0
    qos: int = 0
    proto: str = "802.1q"
    mac: str = "00:00:00:00:00:00"
    spoofchk: bool = True
    trust: bool = False
    min_tx_rate: int = 0
    max_tx_rate: int = 0
    link_state: str = "auto"

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, object]) -> VfState:
        return VfState(**{k: v for k, v in d.items() if k in FIELDS})   # type: ignore[arg-type]


@dataclass(frozen=True)
class Vf:
    pci: str
    pf: str            # the PF's netdev name
    index: int         # the VF's number on its PF
    netdev: str        # the VF's own netdev ("" when bound to a userspace driver: DPDK)


def resolve(root: str, pci: str) -> Vf:
    """Where a VF (PCI address) is; NetError when the address is not a VF."""
    devices = os.path.join(root, "bus", "pci", "devices")
    vf_dir = os.path.join(devices, pci)
    if not os.path.isdir(vf_dir):
        raise NetError(f"no PCI device {pci} (under {devices})")
    physfn = os.path.join(vf_dir, "physfn")
    if not os.path.exists(physfn):
        raise NetError(f"PCI device {pci} is not an SR-IOV virtual function (it has no physfn)")
    pf_dir = os.path.realpath(physfn)
    index = -1
    for name in os.listdir(pf_dir):
        if name.startswith("virtfn") and os.path.realpath(os.path.join(pf_dir, name)) == os.path.realpath(vf_dir):
            index = int(name[len("virtfn"):])
    if index < 0:
        raise NetError(f"PF {os.path.basename(pf_dir)} lists no virtfn for {pci}")
    pf_nets = _nets(pf_dir)
    if not pf_nets:
        raise NetError(f"PF {os.path.basename(pf_dir)} of {pci} has no network device")
    vf_nets = _nets(vf_dir)
    return Vf(pci, pf_nets[0], index, vf_nets[0] if vf_nets else "")


def _nets(device_dir: str) -> list[str]:
    try:
        return sorted(os.listdir(os.path.join(device_dir, "net")))
    except OSError:
        return []


class VfOps(Protocol):
    def get(self, pf: str, index: int) -> VfState: ...
    def set(self, pf: str, index: int, state: VfState, fields: tuple[str, ...]) -> None: ...


class RecordingVfOps:
    """VF operations kept in a JSON file instead of a PF: {"vfs": {"<pf>/<i>": state}, "calls": [...]}.
    Each call is appended as "set <pf> <index> <field>=<value> …", in order."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _load(self) -> dict[str, object]:
        try:
            with open(self.path) as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}

    def get(self, pf: str, index: int) -> VfState:
        vfs = self._load().get("vfs") or {}
        raw = vfs.get(f"{pf}/{index}") if isinstance(vfs, dict) else None
        if raw is None:
            raise NetError(f"{pf} has no VF {index}")
        return VfState.from_dict(raw)

    def set(self, pf: str, index: int, state: VfState, fields: tuple[str, ...]) -> None:
        data = self._load()
        vfs = data.setdefault("vfs", {})
        assert isinstance(vfs, dict)
        key = f"{pf}/{index}"
        if key not in vfs:
            raise NetError(f"{pf} has no VF {index}")
        current = {**vfs[key], **{f: getattr(state, f) for f in fields}}
        vfs[key] = current
        calls = data.setdefault("calls", [])
        assert isinstance(calls, list)
        calls.append(f"set {pf} {index} " + " ".join(f"{f}={getattr(state, f)}" for f in fields))
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, self.path)


def ops(recorder: str = "") -> VfOps:
    """The PF's operations: the kernel's (netlink), or a recording (no hardware)."""
    if recorder:
        return RecordingVfOps(recorder)
    from .vfnl import NetlinkVfOps
    return NetlinkVfOps()
