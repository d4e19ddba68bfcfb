"""Pod admission: what must hold around a Kubernetes pod's interface ADD and DEL besides the
plugin's own work — today, its NetworkPolicy memberships (no startup window: programmed before
ADD returns).

The plugins that give a pod its interface and addresses (POD_INTERFACE_TYPES) are wrapped: for
a pod that CNI_ARGS names (K8S_POD_NAMESPACE, K8S_POD_NAME), the installed `Admission` programs it
the moment IPAM has given its addresses — before they are on its interface, so not even a process
already running in the sandbox gets a packet through first — or after the ADD when no IPAM gave
them.  If that fails, the ADD is undone and answered code 11 (try again later) — a pod never runs
unpoliced.  After DEL (or a failed ADD), the pod's addresses are released.

The agent installs its policy engine (agent/node.py).  Without one (the in-process path, when
the agent is away, or an agent without --network-policy) the default refuses a pod's ADD while
this node's policy table exists: nobody could program the pod, and an unprogrammed pod would
pass traffic a policy forbids.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from ..cni.errors import TRY_AGAIN_LATER, CNIError
from ..cni.request import Request
from ..cni.skel import Plugin
from ..cni.types import Result
from ..plugins import delegate

log = logging.getLogger(__name__)

POD_INTERFACE_TYPES = frozenset({"bridge", "ptp", "macvlan", "ipvlan", "vlan", "host-device", "dummy", "sriov",
                                 "podnet"})
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class Admission(Protocol):
    def admit(self, namespace: str, name: str, container: str, ips: list[IPAddr], netns: str = "") -> None:
        """Program the pod (raise if that cannot be done: the ADD is undone); netns: the pod's
        (pod-network underlay programs a table inside it)."""

    def release(self, namespace: str, name: str, container: str, ips: list[IPAddr]) -> None:
        """The sandbox is gone (best effort; DEL succeeds regardless)."""


class WithoutAgent:
    """No policy engine in this process: refuse a pod's ADD while the node's policy table exists."""

    def admit(self, namespace: str, name: str, container: str, ips: list[IPAddr], netns: str = "") -> None:
        from ..net import policy_nft
        if policy_nft.table_exists():
            raise CNIError(TRY_AGAIN_LATER, f"pod {namespace}/{name}: NetworkPolicy is enforced on this node "
                                            f"(table {policy_nft.TABLE}) and the podnet agent that programs it "
                                            "is not answering; try again when it is")

    def release(self, namespace: str, name: str, container: str, ips: list[IPAddr]) -> None:
        from ..net import policy_nft
        policy_nft.forget(str(ip) for ip in ips)


_installed: Admission = WithoutAgent()


def install(admission: Admission | None) -> None:
    """The agent's policy engine (None: back to WithoutAgent)."""
    global _installed
    _installed = admission if admission is not None else WithoutAgent()


def pod_of(req: Request) -> tuple[str, str] | None:
    ns, name = req.args.get("K8S_POD_NAMESPACE", ""), req.args.get("K8S_POD_NAME", "")
    return (ns, name) if ns and name else None


def _prev_ips(req: Request) -> list[IPAddr]:
    prev: Any = req.config.get("prevResult")
    out: list[IPAddr] = []
    if isinstance(prev, dict):
        for entry in prev.get("ips") or []:
            try:
                out.append(ipaddress.ip_interface(str(entry.get("address"))).ip)
            except (ValueError, AttributeError):
                continue
    return out


def _admit(pod: tuple[str, str], container: str, ips: list[IPAddr], netns: str) -> None:
    """Program the pod, or raise code 11 (the caller undoes the ADD)."""
    try:
        _installed.admit(*pod, container, ips, netns=netns)
    except Exception as e:  # whatever stopped it, the runtime is told to try again
        if isinstance(e, CNIError) and e.code == TRY_AGAIN_LATER:
            raise
        raise CNIError(TRY_AGAIN_LATER, f"pod {pod[0]}/{pod[1]}: its NetworkPolicy could not be programmed "
                                        f"({type(e).__name__}: {e}); the ADD was undone") from None


def wrap(plugin: Plugin) -> Plugin:
    """The plugin with admission around its ADD and DEL.  The pod is programmed the moment IPAM
    gives its addresses (delegate.addresses_given), before the plugin configures its interface;
    after the ADD only if that did not happen (no IPAM: chained, or static addresses set by the
    plugin) or the result's addresses differ."""
    inner_add: Callable[[Request], Result] = plugin.add
    inner_del: Callable[[Request], None] = plugin.delete

    def add(req: Request) -> Result:
        pod = pod_of(req)
        if pod is None:
            return inner_add(req)
        admitted: list[IPAddr] = []

        def before_addresses(ips: list[IPAddr]) -> None:
            _admit(pod, req.container_id, ips, req.netns)
            admitted[:] = ips
        token = delegate.addresses_given.set(before_addresses)
        try:
            result = inner_add(req)
        except BaseException:
            if admitted:
                _release_quietly(pod, req.container_id, admitted)
            raise
        finally:
            delegate.addresses_given.reset(token)
        ips = [c.address.ip for c in result.ips]
        if set(ips) != set(admitted) or not admitted:
            try:
                _admit(pod, req.container_id, ips, req.netns)
            except CNIError:
                try:
                    inner_del(req)
                except Exception as undo:  # noqa: BLE001 - report the admission failure, log the undo's
                    log.warning("undoing the ADD of %s/%s after its admission failed: %s", *pod, undo)
                raise
        return result

    def delete(req: Request) -> None:
        inner_del(req)
        pod = pod_of(req)
        if pod is not None:
            _release_quietly(pod, req.container_id, _prev_ips(req))

    return replace(plugin, add=add, delete=delete)


def _release_quietly(pod: tuple[str, str], container: str, ips: list[IPAddr]) -> None:
    try:
        _installed.release(*pod, container, ips)
    except Exception as e:  # noqa: BLE001 - DEL must succeed; the agent's resync corrects the table
        log.warning("releasing %s/%s from NetworkPolicy: %s", *pod, e)
