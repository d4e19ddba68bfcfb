"""`podnet demo --kubelet --pod-network underlay`: pods on the datacenter network (the lab's fabric)
on real kubelets — eth0 a macvlan child of each node's uplink with an address of the fabric's
subnet from the cluster IPAM in etcd, a leg to the node for the node and Services — installed by
podnet's DaemonSet.  Checks and prints: pod ↔ pod across nodes with no podnet route in any node's
main table (proved from the tables), a fabric host ↔ pods directly seeing the pods' own addresses,
a ClusterIP Service with backends on both nodes, HTTP readiness (node → pod), hostPort and NodePort
from the fabric, and NetworkPolicy deny-all then allow.  PASS only if all hold; nothing is left."""
from __future__ import annotations

import sys
import time
from typing import Any


def run_underlay_demo(nodes: int, keep: bool = False, ipam: str = "cluster") -> int:
    from .lab import FABRIC_NET
    from .lab import kubechecks as kc
    from .lab import underlaychecks as uc
    from .lab.images import PROBE
    from .lab.kubecluster import UNDERLAY_POOL, KubeletCluster
    t0 = time.perf_counter()
    lab = KubeletCluster(nodes, pod_network="underlay", ipam=ipam)
    results: dict[str, bool] = {}
    try:
        lab.up()
        source = (f"Neutron (each pod a port; {lab.neutron_url()}, network fabric, pairs: a block per node)"
                  if ipam == "neutron" else "the cluster IPAM in etcd")
        print(f"podnet demo --kubelet --pod-network underlay: {nodes} nodes, pods on the fabric "
              f"{FABRIC_NET}.0/24 (pool {UNDERLAY_POOL}, macvlan on up0 + a leg to the node), addresses from "
              f"{source}; every node Ready {lab.timings['apply_to_ready']:.1f}s after kubectl apply")
        pods = kc.deploy_probe(lab, "web", 2 * nodes, PROBE, http_ready=True)
        print("\n" + lab.kubectl("get", "pods", "-o", "wide").rstrip())
        results["pods on the fabric's subnet, every node"] = (all(uc.in_pool(p.ip, UNDERLAY_POOL) for p in pods)
                                                              and {p.node for p in pods} == {h.name for h in lab.hosts})
        results["HTTP readinessProbe (kubelet on the node → pod, through the leg)"] = True   # deploy_probe waited Ready
        if ipam == "neutron":
            results.update(neutron_checks(lab, pods))
        print("\nnodes' main routing tables (no podnet route: pod ↔ pod is the fabric's business):")
        for i in lab.live:
            for r in uc.main_routes(lab, i):
                print(f"  n{i + 1}: {r['dst']}" + (f" via {r['gateway']}" if "gateway" in r else "") + f" dev {r['dev']}")
        not_via = uc.legs_route_to_remote_pods(lab, pods)
        results["what a node forwards from its legs reaches other nodes' pods via their node"] = not not_via
        for w in not_via:
            print(f"  FAILED {w}")
        print("tables for what a node forwards from its pods' legs only (a Service answer must cross the node "
              "that did the DNAT): each other node's block via that node")
        for i in lab.live:
            for line in uc.leg_table_routes(lab, i):
                print(f"  n{i + 1}: {line}")
        bad_routes = uc.routes_clean(lab, pods)
        results["no podnet route in any main table; every node reaches the others' pods on-link"] = not bad_routes
        for b in bad_routes:
            print(f"  FAILED {b}")
        pairs = kc.pod_pairs(lab, pods)
        bad = sorted(k for k, v in pairs.items() if not v)
        print(f"\npod → pod by Pod IP: {len(pairs) - len(bad)}/{len(pairs)} (TCP :80 and UDP :81)")
        results["pod ↔ pod, both nodes"] = not bad
        reach = uc.from_fabric(lab, pods)
        print(f"fabric host {FABRIC_NET}.254 (not a node) → pods directly: {sum(reach.values())}/{len(pods)}")
        results["fabric host → pods"] = all(reach.values())
        with uc.fabric_server(lab) as server:
            seen = uc.seen_by_fabric(lab, pods, server)
        own = sum(1 for p in pods if seen[p.name] == p.ip)
        print(f"pods → fabric host {server}: {own}/{len(pods)} seen with their own address (no NAT)")
        results["pods → fabric host, no NAT"] = own == len(pods)
        cluster_ip = lab.get("service", "web")["spec"]["clusterIP"]
        via = kc.via_service(lab, pods, cluster_ip, tries=4)
        backends = {b for v in via.values() for b in v}
        by_node = {p.name: p.node for p in pods}
        print(f"pod → Service web {cluster_ip}:80 (kube-proxy nftables, through the leg): "
              f"{sum(1 for v in via.values() if v)}/{len(pods)} answered, backends on "
              f"{', '.join(sorted({by_node[b] for b in backends}))}")
        results["ClusterIP Service, backends on both nodes"] = (all(via.values()) and
                                                                {by_node[b] for b in backends} == set(by_node.values()))
        kept = uc.service_sees_clients(lab, pods, cluster_ip)
        print(f"  … and the backends saw each client's own address: {sum(kept.values())}/{len(pods)} "
              "(no NAT for pod → Service, whichever node the backend is on)")
        results["Service backends see the client pod's address"] = all(kept.values())
        kc.apply(lab, kc.host_port_pod("hostport", PROBE, "n1", 18080))
        kc.wait_pods(lab, f"{kc.PROBE_LABEL}=hostport", 1)
        deadline, answer = time.monotonic() + 20, ""
        while answer != "hostport" and time.monotonic() < deadline:
            answer = kc.http_from(lab.fab, f"{FABRIC_NET}.1", 18080)
        print(f"hostPort 18080 on n1 from the fabric: {'ok' if answer == 'hostport' else 'FAILED'}")
        results["hostPort from the fabric"] = answer == "hostport"
        port, answers = uc.node_port(lab, "web")
        print(f"NodePort {port} from the fabric: " + ", ".join(f"{n} → {a or 'FAILED'}" for n, a in answers.items()))
        results["NodePort from the fabric"] = all(a in by_node for a in answers.values())
        verdicts = uc.policy_deny_allow(lab, PROBE)
        for what, ok in verdicts.items():
            print(f"NetworkPolicy: {what}: {'ok' if ok else 'FAILED'}")
        results.update({f"NetworkPolicy: {k}": v for k, v in verdicts.items()})
    except Exception as e:  # noqa: BLE001 - the report says what failed; teardown still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        results["the demo ran to the end"] = False
    finally:
        if not keep:
            lab.down()
    return kc.demo_verdict(results, t0)


def neutron_checks(lab: Any, pods: list[Any]) -> dict[str, bool]:
    """Each pod's Neutron port (its address and MAC are the pod's eth0's) and each node VM port's
    allowed address pairs (a block per node, covering that node's pods): printed, then checked."""
    import ipaddress

    from .lab import underlaychecks as uc
    ports = lab.neutron.ports(device_owner="podnet:pod")
    by_ip = {p["fixed_ips"][0]["ip_address"]: p for p in ports}
    print("\nNeutron ports of the pods (device_owner podnet:pod):")
    for p in pods:
        port = by_ip.get(p.ip)
        print(f"  {p.name} ({p.node}) {p.ip}: " + (f"port {port['name']} {port['id'][:8]} mac {port['mac_address']}"
                                                     if port else "NO PORT"))
    macs = {p.name: uc.pod_mac(lab, p.name) for p in pods}
    owned = all(p.ip in by_ip and by_ip[p.ip]["mac_address"] == macs[p.name] for p in pods)
    print("the nodes' VM ports and their allowed address pairs:")
    vms = {v["name"]: v for v in lab.neutron.ports(device_owner="compute:nova")}
    covered = True
    for name, vm in sorted(vms.items()):
        pairs = [q["ip_address"] for q in vm.get("allowed_address_pairs", [])]
        print(f"  {name} {vm['fixed_ips'][0]['ip_address']}: pairs {', '.join(pairs) or '(none)'}")
        nets = [ipaddress.ip_network(q) for q in pairs]
        covered &= all(any(ipaddress.ip_address(p.ip) in n for n in nets) for p in pods if p.node == name)
    return {"every pod is a Neutron port: its address, its MAC": owned,
            "each node's VM port has a pair covering its pods": covered}
