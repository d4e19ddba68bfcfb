"""The cluster of the NetworkPolicy tests as data — namespaces x, y, z, pods a, b, c in each,
spread over nodes — and a seeded generator of random policies over it.  Used by the compiler's
unit tests (through the nft model interpreter) and by the cluster tests (on real nftables)."""
from __future__ import annotations

import copy
import ipaddress
import os
import random
from collections.abc import Callable
from typing import Any

from podnet.agent.policy.compiler import Compiler
from podnet.agent.policy.engine import PolicyEngine
from tests.helpers.netpol_cases import NAMESPACES, NS_LABEL, PODS, PORTS, resolve_cidrs
from tests.helpers.netpol_model import Model, MPod
from tests.helpers.nft_eval import verdict

PROTO_NUM = {"TCP": 6, "UDP": 17, "SCTP": 132}
NODES = ("n1", "n2", "n3")


def pod_api(ns: str, name: str, ip: str, node: str, labels: dict[str, str]) -> dict[str, Any]:
    """A Pod as the API returns it (what the engine's watch delivers)."""
    return {"metadata": {"namespace": ns, "name": name, "labels": dict(labels)},
            "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [
                {"name": n, "protocol": proto, "containerPort": p} for n, proto, p in PORTS]}]},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def default_world(nodes: int = 3, v6: bool = False) -> tuple[list[MPod], dict[str, str]]:
    """The 9 pods (IPs in 10.244.0.0/16 or fd00:244::/64) and the node each runs on (round robin)."""
    pods, node_of = [], {}
    k = 0
    for i, ns in enumerate(NAMESPACES):
        for j, name in enumerate(PODS):
            ip = f"fd00:244::{i + 1}:{j + 10}" if v6 else f"10.244.{i + 1}.{j + 10}"
            pods.append(MPod(ns, name, ip, {"pod": name}, {n: (proto, p) for n, proto, p in PORTS}))
            node_of[f"{ns}/{name}"] = f"n{k % nodes + 1}"
            k += 1
    return pods, node_of


def reference(pods: list[MPod], ns_labels: dict[str, dict[str, str]], policies: list[dict[str, Any]]) -> Model:
    return Model(pods, ns_labels, policies)


class PolicyWorld:
    """Three engines, the 9 pods, and the reference model's state, changed step by step."""

    def __init__(self, state_dir: str, v6: bool = False, apply_for: Callable[[str], Callable[[str], None]] | None = None) -> None:
        """apply_for(node): how that node's engine runs a transaction (default: nft in this netns)."""
        self.pods, self.node_of = default_world(len(NODES), v6)
        self.ip_of = {f"{p.namespace}/{p.name}": p.ip for p in self.pods}
        self.ns_labels: dict[str, dict[str, str]] = {ns: {} for ns in ("x", "y", "z")}
        self.policies: dict[str, dict[str, Any]] = {}
        self.cluster_policies: dict[str, dict[str, Any]] = {}
        self.engines = {n: PolicyEngine(n, os.path.join(state_dir, n), apply=apply_for(n) if apply_for else None)
                        for n in NODES}
        for e in self.engines.values():
            e.set_all(pods={k: self._pod_obj(p) for k, p in self._by_key().items()},
                      namespaces={ns: self._ns_obj_labels(ns) for ns in self.ns_labels}, policies={})

    def _by_key(self) -> dict[str, MPod]:
        return {f"{p.namespace}/{p.name}": p for p in self.pods}

    def _pod_obj(self, p: MPod) -> dict[str, Any]:
        return pod_api(p.namespace, p.name, p.ip, self.node_of[f"{p.namespace}/{p.name}"], p.labels)

    def _ns_obj_labels(self, ns: str) -> dict[str, str]:
        return {NS_LABEL: ns, **self.ns_labels[ns]}      # the API server keeps this label on every namespace

    # ------------------------------------------------------------ steps, as API events
    def step(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind in ("create", "update"):
            pol = resolve_cidrs(step[1], self.ip_of)
            key = f"{pol['metadata']['namespace']}/{pol['metadata']['name']}"
            self.policies[key] = pol
            for e in self.engines.values():
                e.policy_event("ADDED" if kind == "create" else "MODIFIED", copy.deepcopy(pol))
        elif kind == "delete":
            key = f"{step[1]}/{step[2]}"
            pol = self.policies.pop(key)
            for e in self.engines.values():
                e.policy_event("DELETED", pol)
        elif kind == "delete-all":
            for key in list(self.policies):
                self.step(("delete", *key.split("/")))
        elif kind in ("cnp-create", "cnp-update"):
            cnp = resolve_cnp_cidrs(step[1], self.ip_of)
            self.cluster_policies[cnp["metadata"]["name"]] = cnp
            for e in self.engines.values():
                e.cluster_policy_event("ADDED" if kind == "cnp-create" else "MODIFIED", copy.deepcopy(cnp))
        elif kind == "cnp-delete":
            cnp = self.cluster_policies.pop(step[1])
            for e in self.engines.values():
                e.cluster_policy_event("DELETED", cnp)
        elif kind == "label-pod":
            pod = self._by_key()[f"{step[1]}/{step[2]}"]
            pod.labels = dict(step[3])
            for e in self.engines.values():
                e.pod_event("MODIFIED", self._pod_obj(pod))
        elif kind == "label-ns":
            self.ns_labels[step[1]] = dict(step[2])
            for e in self.engines.values():
                e.namespace_event("MODIFIED", step[1], self._ns_obj_labels(step[1]))
        else:
            raise AssertionError(f"unknown step {step}")

    # ------------------------------------------------------------ checks
    def reference(self) -> Model:
        return Model(self.pods, self.ns_labels, list(self.policies.values()), list(self.cluster_policies.values()))

    def enforced(self, src: MPod, dst: MPod, port: int, proto: str) -> bool:
        """Out of the source's node, into the destination's (the same table when they share one)."""
        s_node, d_node = self.node_of[f"{src.namespace}/{src.name}"], self.node_of[f"{dst.namespace}/{dst.name}"]
        return all(verdict(self.engines[n].programmed, src.ip, dst.ip, PROTO_NUM[proto], port)
                   for n in {s_node, d_node})

    def mismatches(self, port: int, proto: str) -> list[str]:
        ref = self.reference()
        out = []
        for s in self.pods:
            for d in self.pods:
                if s is d:
                    continue
                want, got = ref.allowed(s, d, port, proto), self.enforced(s, d, port, proto)
                if want != got:
                    out.append(f"{s.namespace}/{s.name} → {d.namespace}/{d.name} {port}/{proto}: "
                               f"model {'allows' if want else 'denies'}, table {'allows' if got else 'denies'}")
        return out

    def assert_incremental_is_full(self) -> None:
        for n, e in self.engines.items():
            fresh = Compiler(e.view).full()
            assert e.programmed == fresh, f"node {n}: the incremental table differs from a full compile"


# ------------------------------------------------------------------ generated policies
LABEL_KEYS = ("pod", "tier", "role")
LABEL_VALUES = ("a", "b", "c", "front", "back")


def _selector(rng: random.Random, ns_level: bool = False) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.2:
        return {}
    if ns_level:
        if roll < 0.6:
            return {"matchLabels": {NS_LABEL: rng.choice(NAMESPACES)}}
        return {"matchExpressions": [{"key": NS_LABEL, "operator": rng.choice(["In", "NotIn"]),
                                      "values": rng.sample(NAMESPACES, rng.randint(1, 2))}]}
    if roll < 0.6:
        return {"matchLabels": {"pod": rng.choice(PODS)}}
    op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
    e: dict[str, Any] = {"key": rng.choice(LABEL_KEYS), "operator": op}
    if op in ("In", "NotIn"):
        e["values"] = rng.sample(LABEL_VALUES, rng.randint(1, 3))
    return {"matchExpressions": [e]}


def _peer(rng: random.Random, ip_of: dict[str, str]) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.35:
        return {"podSelector": _selector(rng)}
    if roll < 0.6:
        return {"namespaceSelector": _selector(rng, True)}
    if roll < 0.85:
        return {"podSelector": _selector(rng), "namespaceSelector": _selector(rng, True)}
    ip = ipaddress.ip_address(rng.choice(list(ip_of.values())))
    wide = ipaddress.ip_network(f"{ip}/{rng.choice([8, 16, 24])}" if ip.version == 4 else f"{ip}/64", strict=False)
    blk: dict[str, Any] = {"cidr": str(wide)}
    if rng.random() < 0.5:
        other = ipaddress.ip_address(rng.choice(list(ip_of.values())))
        blk["except"] = [str(ipaddress.ip_network(f"{other}/{other.max_prefixlen}"))]
    return {"ipBlock": blk}


def _ports(rng: random.Random) -> list[dict[str, Any]] | None:
    if rng.random() < 0.4:
        return None
    out = []
    for _ in range(rng.randint(1, 2)):
        proto = rng.choice(["TCP", "UDP", "TCP", "SCTP"])
        roll = rng.random()
        if roll < 0.15:
            out.append({"protocol": proto})
        elif roll < 0.45:
            out.append({"protocol": proto, "port": rng.choice([n for n, p, _ in PORTS if p == proto] or ["serve-80-tcp"])})
        elif roll < 0.6:
            out.append({"protocol": proto, "port": 79, "endPort": rng.choice([80, 81])})
        else:
            out.append({"protocol": proto, "port": rng.choice([80, 81])})
    return out


def random_policies(rng: random.Random, ip_of: dict[str, str], n: int | None = None) -> list[dict[str, Any]]:
    policies = []
    for k in range(rng.randint(1, 3) if n is None else n):
        ns = rng.choice(NAMESPACES)
        spec: dict[str, Any] = {"podSelector": _selector(rng)}
        types = []
        for key, peers_key, typ in (("ingress", "from", "Ingress"), ("egress", "to", "Egress")):
            if rng.random() < 0.6:
                rules = []
                for _ in range(rng.randint(0, 2)):
                    r: dict[str, Any] = {}
                    if rng.random() < 0.75:
                        r[peers_key] = [_peer(rng, ip_of) for _ in range(rng.randint(1, 2))]
                    ports = _ports(rng)
                    if ports:
                        r["ports"] = ports
                    rules.append(r)
                spec[key] = rules
                types.append(typ)
        if not types:
            types = ["Ingress"]
        spec["policyTypes"] = types
        policies.append({"metadata": {"namespace": ns, "name": f"gen-{k}"}, "spec": spec})
    return policies


# ------------------------------------------------------------------ ClusterNetworkPolicy
def resolve_cnp_cidrs(cnp: dict[str, Any], ip_of: dict[str, str]) -> dict[str, Any]:
    """networks entries written "@ns/pod" (a pod's address, /32 or /128) or "@ns/pod/24" resolved."""
    out = copy.deepcopy(cnp)
    for rule in out["spec"].get("egress") or []:
        for peer in rule.get("to") or []:
            if peer.get("networks") is not None:
                nets = []
                for n in peer["networks"]:
                    if n.startswith("@"):
                        ns, pod, *plen = n[1:].split("/")
                        ip = ipaddress.ip_address(ip_of[f"{ns}/{pod}"])
                        bits = int(plen[0]) if plen else ip.max_prefixlen
                        nets.append(str(ipaddress.ip_network(f"{ip}/{bits if ip.version == 4 else min(128, bits + 96)}",
                                                             strict=False)))
                    else:
                        nets.append(n)
                peer["networks"] = nets
    return out


def cnp(name: str, tier: str, priority: int, subject: dict[str, Any], ingress: list[dict[str, Any]] | None = None,
        egress: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"tier": tier, "priority": priority, "subject": subject}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    return {"apiVersion": "policy.networking.k8s.io/v1beta1", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def _cnp_peer(rng: random.Random, egress: bool) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.4:
        return {"namespaces": _selector(rng, True)}
    if roll < 0.8 or not egress:
        return {"pods": {"namespaceSelector": _selector(rng, True), "podSelector": _selector(rng)}}
    return {"networks": [f"@{rng.choice(NAMESPACES)}/{rng.choice(PODS)}" + rng.choice(["", "/24", "/16"])]}


def _cnp_protocols(rng: random.Random) -> list[dict[str, Any]] | None:
    if rng.random() < 0.4:
        return None
    out: list[dict[str, Any]] = []
    for _ in range(rng.randint(1, 2)):
        proto = rng.choice(["tcp", "udp", "tcp", "sctp"])
        roll = rng.random()
        if roll < 0.25:
            out.append({proto: {}})
        elif roll < 0.5:
            out.append({proto: {"destinationPort": {"range": {"start": 79, "end": rng.choice([80, 81])}}}})
        else:
            out.append({proto: {"destinationPort": {"number": rng.choice([80, 81])}}})
    return out


def random_cluster_policies(rng: random.Random, n: int | None = None, first: int = 0) -> list[dict[str, Any]]:
    """Random Admin and Baseline policies (distinct priorities: equal ones are undefined by the API)."""
    out = []
    priorities = rng.sample(range(1000), 8)
    for k in range(rng.randint(1, 3) if n is None else n):
        tier = rng.choice(["Admin", "Admin", "Baseline"])
        subject = ({"namespaces": _selector(rng, True)} if rng.random() < 0.5 else
                   {"pods": {"namespaceSelector": _selector(rng, True), "podSelector": _selector(rng)}})
        dirs: dict[str, list[dict[str, Any]]] = {}
        for key, peers_key in (("ingress", "from"), ("egress", "to")):
            if rng.random() < 0.6:
                rules = []
                for _ in range(rng.randint(1, 3)):
                    actions = ["Accept", "Deny", "Pass"] if tier == "Admin" else ["Accept", "Deny"]
                    r: dict[str, Any] = {"action": rng.choice(actions),
                                         peers_key: [_cnp_peer(rng, key == "egress") for _ in range(rng.randint(1, 2))]}
                    protos = _cnp_protocols(rng)
                    if protos:
                        r["protocols"] = protos
                    rules.append(r)
                dirs[key] = rules
        out.append(cnp(f"gen-{first + k}", tier, priorities[k % len(priorities)], subject,
                       dirs.get("ingress"), dirs.get("egress")))
    return out
