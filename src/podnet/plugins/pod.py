"""podnet (type `podnet`): a Kubernetes pod's whole network in one exec — what the chain
bridge|ptp → portmap → bandwidth → tuning does, in one call.

    {"type": "podnet", "mode": "bridge" | "ptp" | "macvlan" | "ipvlan",
     <that reference plugin's keys: bridge, isGateway, ipMasq, mtu, hairpinMode, …, ipam;
      macvlan's and ipvlan's own `mode` is written macvlanMode / ipvlanMode>,
     "leg":       {<leg's keys: ifname, routes, nodeIPs>},   macvlan/ipvlan (underlay): always on
     "portmap":   {<portmap's keys: snat, masqAll, …>},          optional sections: present = on
     "bandwidth": {<bandwidth's keys: ingressRate, …>},
     "tuning":    {<tuning's keys: sysctl, mtu, mac, promisc, allmulti, …>},
     "capabilities": {"portMappings": true, "bandwidth": true, "ips": true, "mac": true}}

Each step is the same code as the separate plugin (so the two ways cannot drift apart), given
the config that plugin would have received in the chain: the runtime's runtimeConfig split by
capability, the previous step's result as prevResult.  One runtime exec instead of four is the
point: four interpreter starts were most of a pod's cost.  Every nftables write of the ADD
(masquerade, hostPort mappings) goes in one transaction at its end.  A failed ADD undoes the
steps already done, in reverse; DEL, CHECK, GC and STATUS run every step (DEL in reverse, each idempotent).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cni.convert import parse_result, render_result
from ..cni.errors import CNIError, config_error
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from ..net import leg as leg_net
from ..net import link, netns, nft
from ..net.errors import NetError
from ..net.rtnl import open_rtnl, sharing_netns_sockets
from . import bandwidth, bridge, ipvlan, leg, macvlan, portmap, ptp, tuning

MODES: dict[str, Plugin] = {"bridge": bridge.PLUGIN, "ptp": ptp.PLUGIN, "macvlan": macvlan.PLUGIN,
                            "ipvlan": ipvlan.PLUGIN}
# underlay modes: eth0 on the datacenter network, a leg to the node (plugins/leg.py) right after it;
# the link type's own `mode` key is spelled <type>Mode here (`mode` picks the pod's mode)
UNDERLAY = {"macvlan": "macvlanMode", "ipvlan": "ipvlanMode"}
LEG_KEYS = ("ifname", "routes", "nodeIPs")
# section → (its plugin, the runtimeConfig keys it takes)
SECTIONS: dict[str, tuple[Plugin, tuple[str, ...]]] = {
    "portmap": (portmap.PLUGIN, ("portMappings",)),
    "bandwidth": (bandwidth.PLUGIN, ("bandwidth",)),
    "tuning": (tuning.PLUGIN, ()),
}
MAIN_RUNTIME_KEYS = ("ips", "mac")          # the interface plugin (and its IPAM) take these
OWN_KEYS = ("mode", "leg", "attachments", *UNDERLAY.values(), *SECTIONS)


@dataclass(frozen=True)
class Step:
    name: str                  # "bridge", "ptp", or a section
    plugin: Plugin
    config: dict[str, Any]     # what that plugin would have been given in the chain (no prevResult)


def _base(req: Request) -> dict[str, Any]:
    return {"cniVersion": req.config.get("cniVersion"), "name": req.config.get("name")}


def steps(req: Request) -> list[Step]:
    """The steps this config asks for, in ADD order."""
    c = req.config
    mode = c.get("mode", "bridge")
    if mode not in MODES:
        raise config_error("mode", f"must be one of {', '.join(MODES)}, not {mode!r}")
    rc = req.runtime_config
    main = {k: v for k, v in c.items() if k not in OWN_KEYS and k not in ("runtimeConfig", "prevResult")}
    main_rc = {k: rc[k] for k in MAIN_RUNTIME_KEYS if k in rc}
    if main_rc:
        main["runtimeConfig"] = main_rc
    out = [Step(mode, MODES[mode], main)]
    if mode in UNDERLAY:
        out[0] = Step(mode, MODES[mode], _underlay_main(c, main, mode))
        out.append(Step("leg", leg.PLUGIN, _leg_conf(req, c)))
        if c.get("bandwidth") is not None:
            raise config_error("bandwidth", f"not in {mode} mode: there is no host-side veth of eth0 to shape "
                                            "(the reference bandwidth plugin needs one too)")
    for name, (plugin, rc_keys) in SECTIONS.items():
        if name not in c:
            continue
        section = c[name]
        if section is None:
            continue
        if not isinstance(section, dict):
            raise config_error(name, f"must be an object of {name}'s settings, not {section!r}")
        conf = {**_base(req), **{k: v for k, v in c.items() if k.startswith("cni.dev/")},
                **({"hairpinScope": "pod"} if name == "portmap" and mode in UNDERLAY else {}),
                **{k: v for k, v in section.items() if k not in ("cniVersion", "name", "type")}}
        sub_rc = {k: rc[k] for k in rc_keys if k in rc}
        if sub_rc:
            conf["runtimeConfig"] = sub_rc
        out.append(Step(name, plugin, conf))
    return out


def _underlay_main(c: dict[str, Any], main: dict[str, Any], mode: str) -> dict[str, Any]:
    """The macvlan/ipvlan step's config: its own mode key back under its own name."""
    out = {k: v for k, v in main.items() if k != "mode"}
    if UNDERLAY[mode] in c:
        out["mode"] = c[UNDERLAY[mode]]
    return out


def _leg_conf(req: Request, c: dict[str, Any]) -> dict[str, Any]:
    raw = c.get("leg") or {}
    if not isinstance(raw, dict):
        raise config_error("leg", f"must be an object of the leg's settings, not {raw!r}")
    unknown = sorted(set(raw) - set(LEG_KEYS))
    if unknown:
        raise config_error(f"leg.{unknown[0]}", f"unknown setting (the leg takes {', '.join(LEG_KEYS)})")
    return {**_base(req), **{k: c[k] for k in ("master", "mtu") if k in c}, **raw}


def _sub(req: Request, step: Step, prev: Result | dict[str, Any] | None) -> Request:
    conf = dict(step.config)
    if isinstance(prev, Result):
        conf["prevResult"] = render_result(prev, req.cni_version)
    elif prev is not None:
        conf["prevResult"] = prev
    return dataclasses.replace(req, config=conf)


def _named(step: Step, fn: Callable[[Request], Any], sub: Request) -> Any:
    """Run one step's function; a config error in a section names its field under the section
    (`bandwidth.ingressRate`), as a user reads the podnet config."""
    try:
        return fn(sub)
    except CNIError as e:
        lead = "invalid config: "
        if step.name in (*SECTIONS, "leg") and e.msg.startswith(lead) and not e.msg.startswith(f"{lead}{step.name}."):
            e.msg = f"{lead}{step.name}.{e.msg[len(lead):]}"
            e.args = (e.msg,)
        raise


def add(req: Request) -> Result:
    with sharing_netns_sockets():      # every step visits the pod's netns: one socket for all
        return _add(req)


def _add(req: Request) -> Result:
    done: list[tuple[Step, Result]] = []
    result: Result | None = None
    try:
        with nft.one_transaction():      # masquerade + hostPort mappings: one nft transaction for the pod
            for step in steps(req):
                result = _named(step, step.plugin.add, _sub(req, step, result))
                assert result is not None
                done.append((step, result))
    except BaseException:
        for step, res in reversed(done):
            try:
                _named(step, step.plugin.delete, _sub(req, step, res))
            except Exception:  # noqa: BLE001 - undo is best effort; the ADD's own error is what counts
                pass
        raise
    assert result is not None
    return result


def _delete_host_links_together(req: Request) -> None:
    """The pod's host veth and its bandwidth ifb in one kernel batch (link.delete_together):
    deleting them one by one costs a kernel grace period each, most of a DEL.  Best effort —
    the steps that follow delete whatever is left, and release the rest (masquerade elements
    by prevResult's addresses or by owner, IPAM by container ID)."""
    if req.config.get("bandwidth") is None or not req.netns:
        return
    try:
        with open_rtnl() as host:
            ifb = host.link(bandwidth.ifb_name(req.network, req.container_id))
            if ifb is None:
                return
            with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
                pod_link = pod.link(req.ifname)
            hv = link.host_peer_of(host, pod_link) if pod_link is not None and pod_link.kind == "veth" else None
            if hv is not None:
                link.delete_together(host, [hv.index, ifb.index])
    except NetError:
        pass


def delete(req: Request) -> None:
    """Every step, in reverse, with the ADD's result as prevResult (as a runtime runs a chain);
    each is idempotent, and the first error is raised after the rest have run."""
    with sharing_netns_sockets():
        _delete(req)


def _delete_underlay_links_together(req: Request) -> None:
    """Underlay: the pod's eth0 and its leg in one kernel batch (each link deletion alone waits a
    kernel grace period), after the leg's reply routing is gone.  Best effort: the steps that
    follow remove whatever is left and release IPAM."""
    mode = req.config.get("mode")
    if mode not in UNDERLAY or not req.netns:
        return
    try:
        conf = leg.parse_conf(dataclasses.replace(req, config=_leg_conf(req, req.config)))
        with netns.opened(req.netns) as fd, open_rtnl(fd) as pod:
            found = [lk for lk in (pod.link(req.ifname), pod.link(conf.ifname)) if lk is not None]
            if len(found) == 2:
                leg_net.remove_pod_side(pod, fd)
                link.delete_together(pod, [lk.index for lk in found])
    except (NetError, CNIError):
        pass


def _delete(req: Request) -> None:
    _delete_host_links_together(req)
    _delete_underlay_links_together(req)
    first: BaseException | None = None
    for step in reversed(steps(req)):
        try:
            _named(step, step.plugin.delete, _sub(req, step, req.prev_result))
        except Exception as e:  # noqa: BLE001 - the other steps must still clean up
            first = first or e
    if first is not None:
        raise first


def check(req: Request) -> None:
    prev = req.prev_result
    if prev is None:
        raise config_error("prevResult", "CHECK needs the ADD result")
    parse_result(prev, req.cni_version)          # a malformed prevResult fails before any step
    with sharing_netns_sockets():
        for step in steps(req):
            if step.plugin.check is not None:
                _named(step, step.plugin.check, _sub(req, step, prev))


def status(req: Request) -> None:
    for step in steps(req):
        if step.plugin.status is not None:
            _named(step, step.plugin.status, _sub(req, step, None))


def gc(req: Request) -> None:
    for step in steps(req):
        if step.plugin.gc is not None:
            _named(step, step.plugin.gc, _sub(req, step, None))


PLUGIN = Plugin("podnet", add, delete, check, status, gc)
