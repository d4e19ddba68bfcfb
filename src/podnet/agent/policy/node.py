"""NetworkPolicy on a node's agent: the engine, its API watches, its place in pod admission
(dispatch/admission.py) and its introspection endpoints (GET /policy/show, /policy/explain) —
started with `network-policy: true` on the kubernetes datastore."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .engine import PolicyEngine

log = logging.getLogger(__name__)


class NodePolicy:
    def __init__(self, store: Any, node: str, state_dir: str, watch_timeout: int,
                 on_synced: Callable[[], None] | None = None, pod_interface: str = "") -> None:
        """store: a datastore with an API client (`kube`: its client and Events); pod_interface:
        pod-network underlay (each pod's netns gets the table, for that interface)."""
        from .watch import PolicyWatch
        kube = store.kube
        self.engine = PolicyEngine(node, state_dir, announce=kube.object_event, pod_interface=pod_interface)
        self.watch = PolicyWatch(kube.client, self.engine, watch_timeout, on_synced=on_synced,
                                 watch_client=getattr(kube, "watch_client", None))
        self.engine.fetch_pod = self.watch.fetch_pod

    @property
    def trouble(self) -> str:
        return self.watch.trouble

    def start(self) -> None:
        import os

        from ...dispatch import admission
        from ...net import sysctl
        from .. import server
        for fam in ("iptables", "ip6tables"):          # pods on a bridge: their traffic must reach the forward hook
            if os.path.exists(f"/proc/sys/net/bridge/bridge-nf-call-{fam}"):
                sysctl.ensure(f"net/bridge/bridge-nf-call-{fam}", 1)
        admission.install(self.engine)       # from now on a pod's ADD waits for its policy
        server.GET_HANDLERS["/policy/show"] = self._show
        server.GET_HANDLERS["/policy/explain"] = self._explain
        server.GET_HANDLERS["/policy/seen"] = self._seen
        self.watch.start()

    def stop(self) -> None:
        from ...dispatch import admission
        admission.install(None)
        self.watch.stop()

    def _show(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not query.get("pod"):
            return 400, {"error": "pod: give namespace/name or an address"}
        out = self.engine.show(query["pod"])
        return (404 if "error" in out else 200), out

    def _seen(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """Which version of an object the table reflects ("Kind/namespace/name"; null: none):
        how a test or an operator knows a change has been programmed on this node; for a recent
        Pod event also when it arrived and when it was programmed."""
        key = query.get("object", "")
        with self.engine.lock:          # a version is "seen" once its transaction is in the kernel
            version = self.engine.seen_version(key)
            out: dict[str, Any] = {"object": key, "resourceVersion": version, "ready": self.engine.ready}
            timing = self.watch.timings.get(key[4:]) if key.startswith("Pod/") else None
            if timing is not None and timing[0] == version:
                # that version's Pod event: when it arrived off the watch and when its transaction
                # was committed (CLOCK_MONOTONIC seconds)
                out["arrived"], out["programmed"] = timing[1], timing[2]
            return 200, out

    def _explain(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            port = int(query.get("port", ""))
        except ValueError:
            return 400, {"error": "port: a number"}
        proto = query.get("protocol", "TCP").upper()
        if not query.get("src") or not query.get("dst") or proto not in ("TCP", "UDP", "SCTP"):
            return 400, {"error": "src, dst (namespace/name or address) and protocol TCP, UDP or SCTP"}
        return 200, self.engine.explain(query["src"], query["dst"], port, proto)


def remove_stale_table() -> None:
    """NetworkPolicy is off: a table a previous configuration left would make admission refuse
    every pod (dispatch/admission.WithoutAgent) — it goes."""
    from ...net import nft, policy_nft
    if policy_nft.table_exists():
        log.warning("network-policy is off: removing the table %s a previous configuration left", policy_nft.TABLE)
        nft.run_ignoring_missing(f"delete table {policy_nft.TABLE}\n")
