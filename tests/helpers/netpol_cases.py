"""The NetworkPolicy cases of Kubernetes' e2e suite (test/e2e/network/netpol/network_policy.go),
restated as data for the cluster x, y, z × pods a, b, c (labels pod=<name>; container ports
serve-80-tcp, serve-81-tcp, serve-80-udp, serve-81-udp).  Each case is a list of steps:

    ("create", policy) · ("update", policy) · ("delete", namespace, name) · ("delete-all",)
    ("label-pod", ns, pod, labels) · ("label-ns", ns, labels) · ("probe", port, protocol)

The expected truth table at each probe is NOT written here: it comes from the reference model
(netpol_model.py) applied to the policies and labels in force at that step.  The SCTP cases probe
TCP: this kernel has no SCTP, and an SCTP-only rule must never let TCP through.
"""
from __future__ import annotations

from typing import Any

NS_LABEL = "kubernetes.io/metadata.name"
NAMESPACES = ("x", "y", "z")
PODS = ("a", "b", "c")
PORTS = (("serve-80-tcp", "TCP", 80), ("serve-81-tcp", "TCP", 81), ("serve-80-udp", "UDP", 80),
         ("serve-81-udp", "UDP", 81))


def pol(ns: str, name: str, selector: dict[str, Any] | None = None, ingress: list[Any] | None = None,
        egress: list[Any] | None = None, types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector or {}}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    if types is None:
        types = (["Ingress"] if ingress is not None else []) + (["Egress"] if egress is not None else [])
    spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def pods(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def ns_is(ns: str) -> dict[str, Any]:
    return {"matchLabels": {NS_LABEL: ns}}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": op, "values": list(values)}]}


def port(p: int | str, proto: str | None = None, end: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"port": p}
    if proto:
        out["protocol"] = proto
    if end:
        out["endPort"] = end
    return out


A = pods(pod="a")
T80 = ("probe", 80, "TCP")
T81 = ("probe", 81, "TCP")
U80 = ("probe", 80, "UDP")
U81 = ("probe", 81, "UDP")

CASES: dict[str, list[tuple[Any, ...]]] = {
    "default-deny-ingress": [("create", pol("x", "deny-ingress", ingress=[])), T80],
    "default-deny-all": [("create", pol("x", "deny-all", ingress=[], egress=[])), T80],
    "allow from pods within namespace by podSelector": [
        ("create", pol("x", "x-a-allows-x-b", A, ingress=[{"from": [{"podSelector": pods(pod="b")}]}])), T80],
    "allow ingress for a target": [
        ("create", pol("x", "deny-all", ingress=[])),
        ("create", pol("x", "allow-all-to-a", A, ingress=[{"from": [{"podSelector": {}, "namespaceSelector": {}}]}])),
        T80],
    "allow ingress from all namespaces": [
        ("create", pol("x", "allow-from-another-ns", A, ingress=[{"from": [{"namespaceSelector": {}}]}])), T80],
    "allow only from a namespace by namespaceSelector": [
        ("create", pol("x", "allow-client-a-via-ns-selector", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}])),
        T80],
    "podSelector with matchExpressions": [
        ("create", pol("x", "x-a-allows-x-b", A, ingress=[{"from": [{"podSelector": expr("pod", "In", "b")}]}])), T80],
    "namespaceSelector with matchExpressions": [
        ("create", pol("x", "allow-ns-y", A, ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "In", "y")}]}])),
        T80],
    "podSelector OR namespaceSelector": [
        ("create", pol("x", "allow-ns-y-or-b", A, ingress=[{"from": [{"namespaceSelector": expr(NS_LABEL, "NotIn", "x")},
                                                                     {"podSelector": pods(pod="b")}]}])), T80],
    "podSelector AND namespaceSelector": [
        ("create", pol("x", "allow-ns-not-x-pod-b", A, ingress=[{"from": [
            {"namespaceSelector": expr(NS_LABEL, "NotIn", "x"), "podSelector": pods(pod="b")}]}])), T80],
    "multiple podSelectors and namespaceSelectors": [
        ("create", pol("x", "allow-ns-y-z-pod-b-c", A, ingress=[{"from": [
            {"namespaceSelector": expr(NS_LABEL, "NotIn", "x"), "podSelector": expr("pod", "In", "b", "c")}]}])), T80],
    "any podSelectors": [
        ("create", pol("x", "allow-ns-x-pod-b-c", A, ingress=[{"from": [{"podSelector": pods(pod="b")},
                                                                        {"podSelector": pods(pod="c")}]}])), T80],
    "only a pod in another namespace": [
        ("create", pol("x", "allow-ns-y-pod-a", A, ingress=[{"from": [{"namespaceSelector": ns_is("y"),
                                                                       "podSelector": pods(pod="a")}]}])), T80],
    "ports": [
        ("create", pol("x", "allow-81-from-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                            "ports": [port(81, "TCP")]}])), T81],
    "stacked policies with overlapping podSelectors": [
        ("create", pol("x", "allow-81-from-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                            "ports": [port(81, "TCP")]}])), T81, T80,
        ("create", pol("x", "allow-80-from-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                            "ports": [port(80, "TCP")]}])), T80],
    "allow-all": [("create", pol("x", "allow-all", ingress=[{}])), T80, T81],
    "ingress on one named port": [("create", pol("x", "allow-all", ingress=[{"ports": [port("serve-81-tcp")]}])), T81, T80],
    "ingress from a namespace on one named port": [
        ("create", pol("x", "allow-y-80", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                       "ports": [port("serve-80-tcp", "TCP")]}])), T80, T81],
    "egress on one named port": [("create", pol("x", "allow-egress", egress=[{"ports": [port("serve-80-tcp")]}])), T80, T81],
    "updated policy": [
        ("create", pol("x", "allow-all-mutate-to-deny-all", ingress=[{}])), T81,
        ("update", pol("x", "allow-all-mutate-to-deny-all", ingress=[])), T81],
    "ingress from updated namespace": [
        ("create", pol("x", "allow-ns2", A, ingress=[{"from": [{"namespaceSelector": pods(ns2="updated")}]}])), T80,
        ("label-ns", "y", {"ns2": "updated"}), T80],
    "ingress from updated pod": [
        ("create", pol("x", "allow-pod-b-updated", A, ingress=[{"from": [{"podSelector": pods(pod="b", pod2="updated")}]}])),
        T80, ("label-pod", "x", "b", {"pod": "b", "pod2": "updated"}), T80],
    "deny ingress from other namespaces": [
        ("create", pol("x", "deny-empty-policy", ingress=[{"from": [{"podSelector": {}}]}])), T80],
    "deny ingress to updated pod": [
        ("create", pol("x", "deny-isolated", pods(target="isolated"), ingress=[])), T80,
        ("label-pod", "x", "a", {"pod": "a", "target": "isolated"}), T80],
    "deny egress by podSelector": [("create", pol("x", "deny-egress-a", A, egress=[])), T80],
    "deny egress from a namespace": [("create", pol("x", "deny-egress-x", egress=[])), T80],
    "ingress and egress together": [
        ("create", pol("x", "in-and-out", A, ingress=[{"from": [{"podSelector": pods(pod="b")}]}],
                       egress=[{"ports": [port(80)]}], types=["Egress", "Ingress"])), T80, T81],
    "egress denied at the client though the server allows": [
        ("create", pol("x", "allow-to-y-a", A, egress=[{"to": [{"namespaceSelector": ns_is("y"),
                                                                 "podSelector": pods(pod="a")}]}])),
        ("create", pol("y", "allow-from-xa-on-ya", A, ingress=[{"from": [{"namespaceSelector": ns_is("x"),
                                                                          "podSelector": pods(pod="a")}]}])),
        ("create", pol("y", "allow-from-xa-on-yb", pods(pod="b"), ingress=[{"from": [
            {"namespaceSelector": ns_is("x"), "podSelector": pods(pod="a")}]}])), T80],
    "egress to a server in another namespace": [
        ("create", pol("x", "allow-to-y-a", A, egress=[{"to": [{"namespaceSelector": ns_is("y"),
                                                                 "podSelector": pods(pod="a")}]}])), T80],
    "ingress any port on a protocol": [
        ("create", pol("x", "allow-ingress-by-proto", A, ingress=[{"ports": [{"protocol": "TCP"}]}])), T80, U80],
    "ingress allow-all takes precedence": [
        ("create", pol("x", "allow-80", ingress=[{"ports": [port(80)]}])), T81,
        ("create", pol("x", "allow-all", ingress=[{}])), T81],
    "egress allow-all takes precedence": [
        ("create", pol("x", "allow-egress-80", egress=[{"ports": [port(80)]}])), T81,
        ("create", pol("x", "allow-egress", egress=[{}])), T81],
    "policies deleted": [
        ("create", pol("x", "deny-all", ingress=[], egress=[])), T80, ("delete-all",), T80],
    "egress to a server in a CIDR block": [
        ("create", pol("x", "allow-cidr", A, egress=[{"to": [{"ipBlock": {"cidr": "@y/b/32"}}]}])), T80],
    "except clause in a CIDR block": [
        ("create", pol("x", "allow-cidr", A, egress=[{"to": [{"ipBlock": {"cidr": "@x/b/4", "except": ["@x/b/32"]}}]}])),
        T80],
    "IP in both CIDR and except allowed by another policy": [
        ("create", pol("x", "allow-cidr", A, egress=[{"to": [{"ipBlock": {"cidr": "@x/b/4", "except": ["@x/b/32"]}}]}])),
        T80,
        ("update", pol("x", "allow-cidr", A, egress=[{"to": [{"ipBlock": {"cidr": "@x/b/32"}}]}])), T80],
    "ingress and egress controlled independently": [
        ("create", pol("x", "allow-egress-for-target", A, egress=[{}])), T80,
        ("create", pol("x", "deny-ingress-target", A, ingress=[])), T80],
    "SCTP is not TCP": [
        ("create", pol("x", "deny-ingress", ingress=[])),
        ("create", pol("x", "allow-only-sctp-81", A, ingress=[{"ports": [port(81, "SCTP")]}])), T81],
    "a policy allowing SCTP isolates": [
        ("create", pol("x", "allow-only-sctp-80", A, ingress=[{"ports": [port(80, "SCTP")]}])), T81],
    "UDP only does not allow TCP": [
        ("create", pol("x", "allow-only-udp-81", A, ingress=[{"ports": [port(81, "UDP")]}])), T81],
    "default namespace label, matchLabels": [
        ("create", pol("x", "allow-ns-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}]}])), T80],
    "default namespace label, matchExpressions (egress)": [
        ("create", pol("x", "allow-not-y", A, egress=[{"to": [{"namespaceSelector": expr(NS_LABEL, "NotIn", "y")}]}])),
        T80],
    "UDP default-deny-ingress": [("create", pol("x", "deny-all", ingress=[])), U80],
    "UDP ports": [
        ("create", pol("x", "allow-81-udp-from-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                                "ports": [port(81, "UDP")]}])), U81],
    "UDP pod in another namespace": [
        ("create", pol("x", "allow-ns-y-pod-a", A, ingress=[{"from": [{"namespaceSelector": ns_is("y"),
                                                                       "podSelector": pods(pod="a")}]}])), U80],
    "SCTP default-deny-ingress (TCP probed)": [("create", pol("x", "deny-all", ingress=[])), T80],
    "SCTP ports (TCP probed)": [
        ("create", pol("x", "allow-81-sctp-from-y", A, ingress=[{"from": [{"namespaceSelector": ns_is("y")}],
                                                                 "ports": [port(81, "SCTP")]}])), T81],
    "SCTP pod in another namespace (TCP probed)": [
        ("create", pol("x", "allow-ns-y-pod-a-sctp", A, ingress=[{"from": [{"namespaceSelector": ns_is("y"),
                                                                            "podSelector": pods(pod="a")}],
                                                                  "ports": [port(80, "SCTP")]}])), T80],
    "endPort range": [
        ("create", pol("x", "allow-range", A, ingress=[{"ports": [port(79, "TCP", 80)]}])), T80, T81],
}


def resolve_cidrs(policy: dict[str, Any], ip_of: dict[str, str]) -> dict[str, Any]:
    """Fill "@ns/pod/32" (the pod's address, /128 for IPv6) and "@ns/pod/4" (a wide block around it:
    /4, /8 for IPv6) placeholders (the e2e cases use a pod's IP)."""
    import ipaddress
    import json
    text = json.dumps(policy)
    for key, ip in ip_of.items():
        addr = ipaddress.ip_address(ip)
        for plen, real in ((32, addr.max_prefixlen), (4, 4 if addr.version == 4 else 8)):
            net = ipaddress.ip_network(f"{ip}/{real}", strict=False)
            text = text.replace(f"@{key}/{plen}", str(net))
    return dict(json.loads(text))
