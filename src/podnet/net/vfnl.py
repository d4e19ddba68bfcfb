"""A PF's VFs over netlink (IFLA_VFINFO_LIST / IFLA_VF_*), through pyroute2 — the production side
of net/sriov.VfOps.  This machine has no SR-IOV hardware: this module is exercised only where a
PF exists; the plugin's logic is tested against sriov.RecordingVfOps (README says so)."""
from __future__ import annotations

from typing import Any

from pyroute2 import IPRoute  # pinned in pyproject: pyroute2==0.9.7
from pyroute2.netlink.exceptions import NetlinkError

from .errors import NetError
from .sriov import LINK_STATES, VfState

RTEXT_FILTER_VF = 1
PROTO = {"802.1q": 0x8100, "802.1ad": 0x88A8}


class NetlinkVfOps:
    def _index(self, ipr: IPRoute, pf: str) -> int:
        found = ipr.link_lookup(ifname=pf)
        if not found:
            raise NetError(f"PF {pf} not found")
        return int(found[0])

    def get(self, pf: str, index: int) -> VfState:
        with IPRoute() as ipr:
            try:
                msg = ipr.get_links(self._index(ipr, pf), ext_mask=RTEXT_FILTER_VF)[0]
            except NetlinkError as e:
                raise NetError(f"PF {pf}: {e}") from None
            vflist = msg.get("IFLA_VFINFO_LIST")
            for info in vflist.get_attrs("IFLA_VF_INFO") if vflist is not None else []:
                mac = info.get("IFLA_VF_MAC") or {}
                if mac.get("vf") != index:
                    continue
                vlan = info.get("IFLA_VF_VLAN") or {}
                rate = info.get("IFLA_VF_RATE") or {}
                state = {v: k for k, v in LINK_STATES.items()}.get((info.get("IFLA_VF_LINK_STATE") or {}).get("link_state", 0))
                return VfState(vlan=vlan.get("vlan", 0), qos=vlan.get("qos", 0), mac=mac.get("mac", ""),
                               spoofchk=bool((info.get("IFLA_VF_SPOOFCHK") or {}).get("spoofchk", 1)),
                               trust=bool((info.get("IFLA_VF_TRUST") or {}).get("trust", 0)),
                               min_tx_rate=rate.get("min_tx_rate", 0), max_tx_rate=rate.get("max_tx_rate", 0),
                               link_state=state or "auto")
        raise NetError(f"PF {pf} has no VF {index}")

    def set(self, pf: str, index: int, state: VfState, fields: tuple[str, ...]) -> None:
        spec: dict[str, Any] = {"vf": index}
        if {"vlan", "qos", "proto"} & set(fields):
            spec["vlan"] = ([{"vlan": state.vlan, "qos": state.qos, "proto": PROTO[state.proto]}]
                            if state.proto != "802.1q" else {"vlan": state.vlan, "qos": state.qos})
        if "mac" in fields:
            spec["mac"] = state.mac
        if {"min_tx_rate", "max_tx_rate"} & set(fields):
            spec["rate"] = {"min_tx_rate": state.min_tx_rate, "max_tx_rate": state.max_tx_rate}
        if "spoofchk" in fields:
            spec["spoofchk"] = int(state.spoofchk)
        if "trust" in fields:
            spec["trust"] = int(state.trust)
        if "link_state" in fields:
            spec["link_state"] = LINK_STATES[state.link_state]
        with IPRoute() as ipr:
            try:
                ipr.link("set", index=self._index(ipr, pf), vf=spec)
            except NetlinkError as e:
                raise NetError(f"PF {pf} VF {index}: {e}") from None
