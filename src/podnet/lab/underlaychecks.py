"""What a user checks on a lab in pod-network underlay (pods on the fabric, macvlan + a leg to the
node) — shared by `podnet demo --kubelet --pod-network underlay` and the kubelet tier.

  routes_clean       no podnet route in any node's main table, and every node reaches every other
                     node's pods on-link over the fabric (`ip route get`): pod ↔ pod needs no route
  from_fabric        a fabric host that is not a node → each pod directly (HTTP GET /)
  seen_by_fabric     each pod → a server on the fabric: the address it saw is the pod's own (no NAT)
  node_port          a NodePort Service from the fabric
  policy_deny_allow  deny-all ingress then an allow, probed pod → pod across nodes and fabric → pod
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from . import kubechecks as kc
from .cluster import FABRIC_NET

NODE_UPLINK = "up0"


def main_routes(lab: Any, i: int) -> list[dict[str, Any]]:
    out = subprocess.run(["ip", "-n", lab.nodes[i], "-j", "route", "show", "table", "main"], capture_output=True,
                         text=True).stdout
    return list(json.loads(out or "[]"))


def leg_table_routes(lab: Any, i: int) -> list[str]:
    from ..net.leg import FORWARD_TABLE
    out = subprocess.run(["ip", "-n", lab.nodes[i], "route", "show", "table", str(FORWARD_TABLE)], capture_output=True,
                         text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def legs_route_to_remote_pods(lab: Any, pods: list[kc.RunningPod], timeout: float = 30) -> list[str]:
    """Wait until what a node forwards from its legs to a pod on another node goes via that node
    (`ip route get POD mark FORWARD_MARK`); returns what still does not, at the timeout."""
    from ..net.leg import FORWARD_MARK
    deadline = time.monotonic() + timeout
    while True:
        wrong = []
        for i in lab.live:
            for p in pods:
                if p.node == f"n{i + 1}":
                    continue
                got = json.loads(subprocess.run(["ip", "-n", lab.nodes[i], "-j", "route", "get", p.ip, "mark",
                                                 hex(FORWARD_MARK)], capture_output=True, text=True).stdout or "[{}]")[0]
                via = f"{FABRIC_NET}.{int(p.node[1:])}"
                if got.get("gateway") != via:
                    wrong.append(f"n{i + 1} → {p.ip} ({p.node}): {got.get('gateway') or got.get('dev')}, not via {via}")
        if not wrong or time.monotonic() > deadline:
            return wrong
        time.sleep(0.5)


def service_sees_clients(lab: Any, pods: list[kc.RunningPod], cluster_ip: str, tries: int = 4) -> dict[str, bool]:
    """pod → the Service's GET /who, `tries` times: every other backend that answered saw the pod's
    own address (a pod that reaches itself through its Service is masqueraded by kube-proxy —
    hairpin — on every network plugin)."""
    out = {}
    for p in pods:
        answers = [str(lab.kubectl("exec", p.name, "--", "pnprobe", "probe", "-p", "/who", "tcp", cluster_ip, "80",
                                   check=False, timeout=30)).split() for _ in range(tries)]
        others = [a for a in answers if len(a) == 2 and a[0] != p.name]
        out[p.name] = len(others) + sum(1 for a in answers if len(a) == 2 and a[0] == p.name) == tries and \
            all(a[1] == p.ip for a in others)
    return out


def routes_clean(lab: Any, pods: list[kc.RunningPod]) -> list[str]:
    """Why pod ↔ pod would depend on a podnet route ([] when it does not): a route of podnet's
    protocol in a node's main table, or a remote pod a node would not reach on-link over the fabric."""
    problems = []
    for i in lab.live:
        name = f"n{i + 1}"
        problems += [f"{name}: podnet route {r['dst']}" for r in main_routes(lab, i) if r.get("protocol") == "151"]
        for p in pods:
            if p.node == name:
                continue
            got = json.loads(subprocess.run(["ip", "-n", lab.nodes[i], "-j", "route", "get", p.ip], capture_output=True,
                                            text=True).stdout or "[{}]")[0]
            if got.get("dev") != NODE_UPLINK or got.get("gateway"):
                problems.append(f"{name} → {p.ip} ({p.node}): {got}")
    return problems


def pod_mac(lab: Any, name: str, ifname: str = "eth0") -> str:
    """The MAC of a pod's interface, read inside the pod."""
    out = str(lab.kubectl("exec", name, "--", "cat", f"/sys/class/net/{ifname}/address", check=False, timeout=30))
    return out.strip()


def from_fabric(lab: Any, pods: list[kc.RunningPod]) -> dict[str, bool]:
    return {p.name: kc.http_from(lab.fab, p.ip, 80) == p.name for p in pods}


@contextlib.contextmanager
def fabric_server(lab: Any) -> Iterator[str]:
    """pnprobe's server on the fabric (the datacenter host, not a node); yields its address."""
    from .images import pnprobe_binary
    proc = subprocess.Popen(["ip", "netns", "exec", lab.fab, str(pnprobe_binary()), "serve"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    addr = f"{FABRIC_NET}.254"
    try:
        deadline = time.monotonic() + 10
        while kc.http_from(lab.fab, addr, 80, timeout=0.5) == "":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pnprobe serve did not start on the fabric")
            time.sleep(0.05)
        yield addr
    finally:
        proc.kill()
        proc.wait()


def seen_by_fabric(lab: Any, pods: list[kc.RunningPod], server: str) -> dict[str, str]:
    """pod → the source address the fabric's server saw (its own address: no NAT)."""
    out = {}
    for p in pods:
        answer = lab.kubectl("exec", p.name, "--", "pnprobe", "probe", "-p", "/ip", "tcp", server, "80", check=False,
                             timeout=30)
        out[p.name] = str(answer).strip()
    return out


def node_port(lab: Any, name: str) -> tuple[int, dict[str, str]]:
    """A NodePort Service for the probe Deployment `name`; (its port, node → the pod that answered)."""
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-np", "namespace": "default"},
           "spec": {"type": "NodePort", "selector": {kc.PROBE_LABEL: name},
                    "ports": [{"port": 80, "protocol": "TCP"}]}}
    kc.apply(lab, svc)
    port = int(lab.get("service", f"{name}-np")["spec"]["ports"][0]["nodePort"])
    answers = {}
    for i in lab.live:
        addr = f"{FABRIC_NET}.{i + 1}"
        deadline, got = time.monotonic() + 20, ""
        while not got and time.monotonic() < deadline:
            got = kc.http_from(lab.fab, addr, port)
        answers[f"n{i + 1}"] = got
    return port, answers


def in_pool(ip: str, pool: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(pool)


def _probe_pod(name: str, node: str, image: str, namespace: str) -> dict[str, Any]:
    pod = kc.host_port_pod(name, image, node, 0)
    pod["metadata"] = {"name": name, "namespace": namespace, "labels": {kc.PROBE_LABEL: name}}
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    return pod




def policy_deny_allow(lab: Any, image: str, namespace: str = "ulpolicy") -> dict[str, bool]:
    """A server pod on n2 and a client pod on n1 (their traffic: macvlan to macvlan, never through
    a node): deny-all ingress in the server's namespace, then an allow from the client's label.
    Probed for real: pod → pod across nodes and the fabric → the server."""
    lab.kubectl("create", "namespace", namespace)
    try:
        kc.apply(lab, _probe_pod("srv", "n2" if len(lab.live) > 1 else "n1", image, namespace),
                 _probe_pod("cli", "n1", image, namespace))
        pods = {p.name: p for p in kc.wait_pods(lab, f"{kc.PROBE_LABEL} in (srv,cli)", 2, namespace=namespace)}
        srv, cli = pods["srv"], pods["cli"]

        def cli_to_srv() -> bool:
            return kc.probe(lab, cli, "tcp", srv.ip, 80, timeout=1) == "srv"

        def fabric_to_srv() -> bool:
            return kc.http_from(lab.fab, srv.ip, 80, timeout=1) == "srv"
        out = {"open before any policy (pod across nodes, fabric)": kc.until(lambda: cli_to_srv() and fabric_to_srv())}
        kc.apply(lab, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "deny-all", "namespace": namespace},
                       "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}})
        out["deny-all ingress stops the pod across nodes and the fabric"] = kc.until(
            lambda: not cli_to_srv() and not fabric_to_srv())
        kc.apply(lab, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                       "metadata": {"name": "from-cli", "namespace": namespace},
                       "spec": {"podSelector": {"matchLabels": {kc.PROBE_LABEL: "srv"}},
                                "ingress": [{"from": [{"podSelector": {"matchLabels": {kc.PROBE_LABEL: "cli"}}}]}]}})
        out["an allow from the client's label lets it in, the fabric stays out"] = kc.until(
            lambda: cli_to_srv() and not fabric_to_srv())
        return out
    finally:
        lab.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
