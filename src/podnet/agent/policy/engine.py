"""The policy engine: keeps `inet podnet_policy` equal to what the cluster's NetworkPolicies say
for this node's pods.

  start     the whole table in one transaction (replacing what a previous agent left: the rules
            stayed in the kernel while it was away, so enforcement never lapsed)
  events    every change from the API (pods, namespaces, policies) → the compiler's new model →
            the diff, as ONE transaction; a failed transaction is followed by a full resync
  admit     CNI ADD of a pod on this node: its addresses are known here first; the pod's labels
            come from the watch cache or one GET; its memberships are programmed before ADD
            returns, so the pod never sends or receives a packet policy forbids.  If its policy
            cannot be computed (API away, pod unknown) it is denied both ways (fail closed),
            with the reason in an Event and a metric, until the engine can compute it.
  release   CNI DEL: the pod's addresses leave every set and map.
Local pods' addresses are persisted under the state dir, so a restarted agent knows them before
kubelet has reported them.

Pod-network underlay (pod_interface set): a pod's eth0 traffic never crosses the node, so every
local pod's netns holds the same table too, hooked on that interface (net/policy_nft.py); each
transaction goes to the node and to every local pod's table, and a pod's table is made whole at
its admission, before its ADD goes on.  Traffic through a pod's leg is the node table's.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...net import policy_nft
from ...net.errors import NftError
from .. import memtrim
from .cluster import ClusterView, IPAddr, PodInfo
from .cnp import ClusterPolicy
from .compiler import Compiler
from .spec import Policy

log = logging.getLogger(__name__)

PodInput = dict[str, Any] | PodInfo     # a Pod as the API's JSON, or as the Pod watch keeps it


def as_pod(obj: PodInput) -> PodInfo:
    return obj if isinstance(obj, PodInfo) else PodInfo.from_api(obj)


def _sctp_in_kernel() -> bool:
    return os.path.exists("/proc/net/sctp") or os.path.exists("/proc/sys/net/sctp")


class PolicyEngine:
    def __init__(self, node: str, state_dir: str, fetch_pod: Callable[[str, str], dict[str, Any] | None] | None = None,
                 announce: Callable[[str, str, str, str, str], None] | None = None,
                 apply: Callable[[str], None] | None = None, pod_interface: str = "") -> None:
        """fetch_pod(namespace, name): the Pod's JSON from the API (None: not found), for a pod
        the watch has not shown yet; announce(kind, namespace, name, reason, message): an Event;
        apply(script): runs one nftables transaction (default: in this process's netns);
        pod_interface: pod-network underlay — each local pod's netns gets the table too, for
        this interface of the pod."""
        self.view = ClusterView(node)
        self.compiler = Compiler(self.view)
        self.programmed = policy_nft.Model()
        self.fetch_pod, self.announce = fetch_pod, announce
        self.apply = apply or policy_nft.apply
        self.lock = threading.RLock()
        self.state_path = os.path.join(state_dir, "policy-pods.json")
        self.latencies: list[float] = []              # seconds per programming (the last 1000)
        self.ready = False
        self.seen: dict[str, str] = {}      # "Kind/namespace/name" → the resourceVersion programmed (not Pods:
        #                                     seen_version reads theirs from the view)
        self.sctp = _sctp_in_kernel()
        self.pod_interface = pod_interface
        self.pod_tables: dict[str, str] = {}      # underlay: local pod key → its netns path
        self._load_local()
        self.apply(policy_nft.frame_script())   # denials need the table; a previous agent's rules stay as they are

    # ------------------------------------------------------------ persistence of local pods
    def _load_local(self) -> None:
        try:
            with open(self.state_path) as f:
                raw = json.load(f)
            for key, entry in raw.items():
                self.view.claim(key, str(entry["container"]), tuple(ipaddress.ip_address(i) for i in entry["ips"]))
                if self.pod_interface and entry.get("netns"):
                    self.pod_tables[key] = str(entry["netns"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self.view.local.clear()
            self.pod_tables.clear()

    def _save_local(self) -> None:
        os.makedirs(os.path.dirname(self.state_path) or ".", exist_ok=True)
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({k: {"container": lp.container, "ips": [str(i) for i in lp.ips],
                           **({"netns": self.pod_tables[k]} if k in self.pod_tables else {})}
                       for k, lp in self.view.local.items()}, f)
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------ programming
    def _program(self, new: policy_nft.Model, full: bool = False, trigger: str = "") -> None:
        """Put `new` in the kernel (a diff, or the whole table); `trigger` names the kind of
        change for the metrics."""
        t0 = time.perf_counter()
        diff = "" if full else policy_nft.diff_script(self.programmed, new)
        try:
            self.apply(policy_nft.full_script(new) if full else diff)
        except NftError as e:
            if full:
                raise
            log.warning("policy transaction failed (%s): resyncing the whole table", e)
            self.apply(policy_nft.full_script(new))
        if self.pod_tables:
            self._program_pods(policy_nft.full_script(new, self.pod_interface) if full else diff, new)
        self.programmed = new
        if full and len(self.view.pods) >= memtrim.SETTLE_PODS:
            memtrim.settle()
        if full or len(diff) > memtrim.BIG_SCRIPT:
            memtrim.give_back()
        took = time.perf_counter() - t0
        self.latencies = [*self.latencies[-999:], took]
        from ..metrics import observe_policy
        observe_policy(took, self.programmed.counts(), len(self.view.denied), trigger or ("Resync" if full else ""),
                       self.policy_counts())

    def policy_counts(self) -> dict[tuple[str, str], int]:
        """(kind, tier) → how many policies the agent holds (a metric; NetworkPolicy has no tier)."""
        out = {("NetworkPolicy", ""): len(self.view.policies), ("ClusterNetworkPolicy", "Admin"): 0,
               ("ClusterNetworkPolicy", "Baseline"): 0}
        for cp in self.view.cluster_policies.values():
            out[("ClusterNetworkPolicy", cp.tier)] = out.get(("ClusterNetworkPolicy", cp.tier), 0) + 1
        return out

    def _program_pods(self, script: str, new: policy_nft.Model, only: str = "") -> None:
        """The same transaction in every local pod's own table (underlay); a pod whose netns is
        gone is forgotten, a table that refuses the diff is replaced whole."""
        from ...net.errors import NetnsGone
        for key, path in list(self.pod_tables.items()):
            if only and key != only:
                continue
            try:
                policy_nft.apply_in(path, script)
            except NetnsGone:
                self.pod_tables.pop(key, None)
            except NftError as e:
                log.warning("policy table of pod %s (%s): %s: replacing it whole", key, path, e)
                try:
                    policy_nft.apply_in(path, policy_nft.full_script(new, self.pod_interface))
                except (NftError, NetnsGone) as again:
                    log.warning("policy table of pod %s: %s", key, again)
                    raise

    def resync(self) -> None:
        """Everything from scratch, one transaction."""
        with self.lock:
            self._program(self.compiler.full(), full=True, trigger="Resync")
            self.ready = True

    # ------------------------------------------------------------ API events
    def set_all(self, pods: Mapping[str, PodInput] | None = None, namespaces: dict[str, dict[str, str]] | None = None,
                policies: dict[str, dict[str, Any]] | None = None,
                cluster_policies: dict[str, dict[str, Any]] | None = None) -> None:
        """A (re)list of one kind: replace it wholesale, then resync."""
        with self.lock:
            if pods is not None:
                self.view.clear_pods()
                for obj in pods.values():
                    self.view.put_pod(as_pod(obj))
            if namespaces is not None:
                self.view.namespaces = dict(namespaces)
            if policies is not None:
                self.view.clear_policies()
                self._forget_seen("NetworkPolicy/")
                for obj in policies.values():
                    self._add_policy(obj)
                    self._saw("NetworkPolicy", obj)
            if cluster_policies is not None:
                self.view.cluster_policies.clear()
                self._forget_seen("ClusterNetworkPolicy/")
                for obj in cluster_policies.values():
                    self._add_cluster_policy(obj)
                    self._saw("ClusterNetworkPolicy", obj)
            self.resync()

    def _saw(self, kind: str, obj: dict[str, Any], deleted: bool = False) -> None:
        meta = obj.get("metadata") or {}
        key = f"{kind}/{meta.get('namespace') or ''}/{meta.get('name')}"
        if deleted:
            self.seen.pop(key, None)
        else:
            self.seen[key] = str(meta.get("resourceVersion") or "")

    def seen_version(self, key: str) -> str | None:
        """The resourceVersion programmed of "Kind/namespace/name" (None: none, or deleted).  A
        Pod's is on its PodInfo (the cluster's pods are many: no second map of them)."""
        if key.startswith("Pod/"):
            pod = self.view.pods.get(key[4:])
            return (pod.version or None) if pod is not None else None
        return self.seen.get(key)

    def _forget_seen(self, prefix: str) -> None:
        for k in [k for k in self.seen if k.startswith(prefix)]:
            del self.seen[k]

    def pod_event(self, kind: str, obj: PodInput) -> None:
        self.pod_events([(kind, obj)])

    def pod_events(self, events: Sequence[tuple[str, PodInput]]) -> None:
        """Pod changes in their order, programmed as one transaction: in a big cluster pods change
        faster than one transaction per change can follow (the watch queues them: policy/watch.py)."""
        with self.lock:
            changed: set[str] = set()
            for kind, obj in events:
                info = as_pod(obj)
                old = self.view.pods.get(info.key)
                before = set(self.view.pod_addrs(old)) if old is not None else set()
                if kind == "DELETED":
                    self.view.drop_pod(info.key)
                else:
                    self.view.put_pod(info)
                if old == (None if kind == "DELETED" else info):
                    continue
                after = set(self.view.pod_addrs(info)) if kind != "DELETED" else set()
                changed |= before | after
            if changed:
                self._program(self.compiler.on_addresses(changed), trigger="Pod")

    def namespace_event(self, kind: str, name: str, labels: dict[str, str], version: str = "") -> None:
        with self.lock:
            self._saw("Namespace", {"metadata": {"name": name, "resourceVersion": version}}, kind == "DELETED")
            before = self.view.namespaces.get(name)
            if kind == "DELETED":
                self.view.namespaces.pop(name, None)
            else:
                self.view.namespaces[name] = labels
            if before != self.view.namespaces.get(name):
                self._program(self.compiler.on_namespace(name), trigger="Namespace")

    def policy_event(self, kind: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        with self.lock:
            self._saw("NetworkPolicy", obj, kind == "DELETED")
            if kind == "DELETED":
                self.view.drop_policy(key)
            else:
                self._add_policy(obj)
            self._program(self.compiler.on_policy(key), trigger="NetworkPolicy")

    def _add_policy(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        try:
            p = Policy.parse(obj)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("NetworkPolicy %s/%s ignored: %s", meta.get("namespace"), meta.get("name"), e)
            return
        self.view.put_policy(p)
        if "SCTP" in p.protocols() and not self.sctp and self.announce is not None:
            self.announce("NetworkPolicy", p.namespace, p.name, "SCTPUnsupported",
                          "this node's kernel has no SCTP: SCTP rules of this policy allow nothing here")

    def cluster_policy_event(self, kind: str, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        key = f"CNP:{name}"
        with self.lock:
            self._saw("ClusterNetworkPolicy", obj, kind == "DELETED")
            if kind == "DELETED":
                self.view.drop_cluster_policy(key)
            else:
                self._add_cluster_policy(obj)
            self._program(self.compiler.on_cluster_policy(key), trigger="ClusterNetworkPolicy")

    def _add_cluster_policy(self, obj: dict[str, Any]) -> None:
        name = str((obj.get("metadata") or {}).get("name"))
        try:
            cp = ClusterPolicy.parse(obj)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            # the CRD's validation refuses such objects: one that got in anyway is dropped (its old
            # version too) and said, not guessed at
            log.warning("ClusterNetworkPolicy %s ignored: %s", name, e)
            self.view.drop_cluster_policy(f"CNP:{name}")
            if self.announce is not None:
                self.announce("ClusterNetworkPolicy", "", name, "PolicyInvalid", f"podnet ignores it: {e}")
            return
        self.view.put_cluster_policy(cp)
        notes = [f"rule {r.label}: {r.unsupported} — enforced fail closed ("
                 f"{'matches nothing' if r.match_none else 'denies all'})" for r in (*cp.ingress, *cp.egress) if r.unsupported]
        if "SCTP" in cp.protocols() and not self.sctp:
            notes.append("this node's kernel has no SCTP: its SCTP rules see no traffic here")
        if notes and self.announce is not None:
            self.announce("ClusterNetworkPolicy", "", name, "PartlyUnsupported", "; ".join(notes))

    # ------------------------------------------------------------ CNI
    def admit(self, namespace: str, name: str, container: str, ips: list[IPAddr], netns: str = "") -> None:
        """CNI ADD: program the pod's memberships (or its denial) before ADD returns — and, in
        underlay, the pod's own table whole, in its netns."""
        key = f"{namespace}/{name}"
        with self.lock:
            had_table = False
            if self.pod_interface and netns:
                had_table = self.pod_tables.pop(key, None) == netns   # made whole below, after the node's
            known = self.view.pods.get(key)
            before = {str(ip) for ip in self.view.pod_ips(known)} if known is not None else set()
            previous = self.view.local.get(key)
            if previous is not None:
                before |= {str(ip) for ip in previous.ips}
            self.view.claim(key, container, tuple(ips))
            self._save_local()
            info, why = self._pod_info(namespace, name, known)
            if info is None:
                first = self.view.denied.get(key) != why
                self.view.denied[key] = why
                if first:
                    log.warning("pod %s denied until its policy can be computed: %s", key, why)
                    if self.announce is not None:
                        self.announce("Pod", namespace, name, "PolicyUnknown",
                                      f"podnet denies this pod's traffic until its policy can be computed: {why}")
            else:
                self.view.denied.pop(key, None)
                self.view.put_pod(info)
            self._program(self.compiler.on_addresses(before | {str(ip) for ip in ips}), trigger="LocalPod")
            if self.pod_interface and netns:
                self.pod_tables[key] = netns
                self._program_pods(policy_nft.full_script(self.programmed, self.pod_interface, fresh=not had_table),
                                   self.programmed, only=key)
                self._save_local()

    def _pod_info(self, namespace: str, name: str, known: PodInfo | None) -> tuple[PodInfo | None, str]:
        """(the pod as the API has it, or None and why not)."""
        if not self.ready:
            return None, "the agent has not yet read the cluster's policies"
        if known is not None:
            return known, ""
        if self.fetch_pod is None:
            return None, "no pod information (the agent has no API client)"
        try:
            raw = self.fetch_pod(namespace, name)
        except Exception as e:  # noqa: BLE001 - the API is away: fail closed
            return None, f"the API is unreachable ({type(e).__name__}: {e})"
        return (PodInfo.from_api(raw), "") if raw is not None else (None, "the API has no such pod")

    def release(self, namespace: str, name: str, container: str, ips: object = ()) -> None:
        """CNI DEL of that sandbox: its addresses leave every set and map (a DEL for an older
        sandbox of the same pod leaves the newer one alone)."""
        key = f"{namespace}/{name}"
        with self.lock:
            mine = self.view.local.get(key)
            if mine is None or (container and mine.container != container):
                return
            self.view.unclaim(key)
            self.view.denied.pop(key, None)
            path = self.pod_tables.pop(key, "")
            if path:
                policy_nft.remove_in(path)          # DEL before the netns goes: nothing left in it
            self._save_local()
            pod = self.view.pods.get(key)
            if pod is not None and pod.node != self.view.node:
                self.view.drop_pod(key)              # only CNI knew it was here
            self._program(self.compiler.on_addresses({str(ip) for ip in mine.ips}), trigger="LocalPod")

    def retry_denied(self) -> None:
        """Pods failed closed at ADD: compute them now if the API has caught up."""
        for key in list(self.view.denied):
            ns, _, name = key.partition("/")
            mine = self.view.local.get(key)
            if mine is not None:
                self.admit(ns, name, mine.container, list(mine.ips), self.pod_tables.get(key, ""))

    # ------------------------------------------------------------ introspection (podnet policy …)
    def explain(self, src: str, dst: str, port: int, protocol: str) -> dict[str, Any]:
        from .explain import explain
        with self.lock:
            return explain(self.view, src, dst, port, protocol)

    def show(self, pod_key: str) -> dict[str, Any]:
        from .explain import show
        with self.lock:
            return show(self.view, pod_key)
