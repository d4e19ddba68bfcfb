"""`podnet demo --kubelet`: podnet on real Kubernetes nodes — kubelet and containerd on every lab
node, podnet installed by `kubectl apply` of its own manifest, then what a user checks: a
Deployment spread over the nodes, every pod to every other by Pod IP (TCP and UDP), every pod
through a ClusterIP Service (kube-proxy, nftables mode), and a hostPort reached on its node's
address.  PASS only if every check holds; the lab is removed afterwards (unless --keep)."""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def run_kubelet_demo(nodes: int, backend: str = "vxlan", encryption: str = "", keep: bool = False,
                     ip_family: str = "ipv4") -> int:
    from .lab import FABRIC_NET
    from .lab import kubechecks as kc
    from .lab.cluster import STATE_DIR
    from .lab.images import PROBE
    from .lab.kubecluster import KubeletCluster
    t0 = time.perf_counter()
    lab = KubeletCluster(nodes, backend, encryption=encryption, ip_family=ip_family)
    dual = ip_family == "dual"
    ok = False
    try:
        lab.up()
        t = lab.timings
        print(f"podnet demo --kubelet: {nodes} nodes (kubelet + containerd {backend}), images ready in "
              f"{t['images']:.1f}s, kube-apiserver in {t['apiserver_ready']:.1f}s, nodes registered (NotReady: no "
              f"CNI yet) in {t['nodes_registered']:.1f}s")
        print(f"kubectl apply -f podnet.yaml ({lab.podnet_image}) → every node Ready in {t['apply_to_ready']:.1f}s")
        print(lab.kubectl("get", "nodes", "-o", "wide").rstrip())
        pods = kc.deploy_probe(lab, "web", 2 * nodes, PROBE, dual=dual)
        print("\n" + lab.kubectl("get", "pods", "-o", "wide").rstrip())
        extra_ok = True
        if dual:
            extra_ok = dual_checks(lab, pods)
        pairs = kc.pod_pairs(lab, pods)
        bad = sorted(k for k, v in pairs.items() if not v)
        print(f"\npod → pod by Pod IP: {len(pairs) - len(bad)}/{len(pairs)} (TCP :80 and UDP :81, kubectl exec pnprobe)")
        for s, d, proto in bad:
            print(f"  FAILED {s} → {d} {proto}")
        cluster_ip = lab.get("service", "web")["spec"]["clusterIP"]
        via = kc.via_service(lab, pods, cluster_ip)
        served = sum(1 for v in via.values() if v)
        print(f"pod → Service web {cluster_ip}:80 (kube-proxy nftables): {served}/{len(pods)} pods answered, "
              f"{len(set().union(*via.values()))} distinct backends seen")
        kc.apply(lab, kc.host_port_pod("hostport", PROBE, "n1", 18080))
        kc.wait_pods(lab, f"{kc.PROBE_LABEL}=hostport", 1)
        answer = ""
        deadline = time.monotonic() + 20
        while answer != "hostport" and time.monotonic() < deadline:
            answer = kc.http_from(lab.fab, f"{FABRIC_NET}.1", 18080)
        print(f"hostPort 18080 on n1 ({FABRIC_NET}.1), from the fabric: {'ok' if answer == 'hostport' else 'FAILED'}")
        by_name = kc.probe(lab, pods[0], "tcp", "web", 80, timeout=5)
        print(f"pod → Service by name (web, through CoreDNS at {', '.join(lab.dns_ips())}): "
              f"{'ok' if by_name in {p.name for p in pods} else 'FAILED'}")
        ok = (not bad and served == len(pods) and answer == "hostport" and extra_ok
              and by_name in {p.name for p in pods})
        if keep:
            os.makedirs(STATE_DIR, exist_ok=True)
            name = "demo" if not os.path.exists(os.path.join(STATE_DIR, "demo.json")) else f"demo-{lab.tag}"
            with open(os.path.join(STATE_DIR, f"{name}.json"), "w") as f:     # what `podnet lab` reads
                json.dump({"name": name, **lab.state()}, f, indent=2)
            print(f"kept as lab {name!r}: podnet lab kubectl --name {name} -- get pods -A; podnet lab down --name {name}")
    except Exception as e:  # noqa: BLE001 - the report says what failed; teardown still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        ok = False
    finally:
        if not keep:
            lab.down()
    print(f"podnet demo: {'PASS' if ok else 'FAIL'} ({time.perf_counter() - t0:.1f}s in all)")
    return 0 if ok else 1


def dual_checks(lab: Any, pods: list[Any]) -> bool:
    """Dual-stack: every pod has an address of each family, pods reach each other in both, the
    Service answers on both ClusterIPs, its name resolves to both, NetworkPolicy holds in both."""
    import ipaddress

    from .lab import kubechecks as kc
    from .lab.control_plane import CLUSTER_CIDR6
    from .lab.images import PROBE
    v6 = ipaddress.ip_network(CLUSTER_CIDR6)
    both = all(p.ip_of(4) and p.ip_of(6) and ipaddress.ip_address(p.ip_of(6)) in v6 for p in pods)
    print(f"status.podIPs: {sum(1 for p in pods if len(p.ips) == 2)}/{len(pods)} pods with an IPv4 and an IPv6 "
          f"address (e.g. {', '.join(pods[0].ips)})")
    results = {"podIPs": both}
    for fam in (4, 6):
        pairs = kc.pod_pairs(lab, pods, ("tcp",), family=fam)
        good = sum(pairs.values())
        print(f"pod → pod by IPv{fam} Pod IP: {good}/{len(pairs)} (TCP :80)")
        results[f"pairs{fam}"] = good == len(pairs)
    ips = lab.get("service", "web")["spec"].get("clusterIPs", [])
    for ip in ips:
        via = kc.via_service(lab, pods, ip, tries=2)
        print(f"pod → Service web [{ip}]:80: {sum(1 for v in via.values() if v)}/{len(pods)} answered")
        results[f"svc {ip}"] = all(via.values())
    results["svc families"] = sorted(":" in ip for ip in ips) == [False, True]
    answer = lab.kubectl("exec", pods[0].name, "--", "nslookup", "web.default.svc.cluster.local", check=False)
    resolved = all(ip in answer for ip in ips)
    print(f"nslookup web.default.svc.cluster.local: {'both ClusterIPs' if resolved else 'FAILED: ' + answer.strip()}")
    results["dns both"] = resolved
    srv, cli = pods[0], next(p for p in pods if p.node != pods[0].node)
    kc.apply(lab, {**kc.host_port_pod("dualdeny", PROBE, srv.node, 0),
                   "metadata": {"name": "dualdeny", "namespace": "default", "labels": {"role": "locked"}}})
    locked = kc.wait_pods(lab, "role=locked", 1)[0]
    before = {fam: kc.until(lambda f=fam: kc.probe(lab, cli, "tcp", locked.ip_of(f), 80, timeout=1) == "dualdeny")
              for fam in (4, 6)}
    results["open before the policy, both families"] = all(before.values())
    kc.apply(lab, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                   "metadata": {"name": "locked", "namespace": "default"},
                   "spec": {"podSelector": {"matchLabels": {"role": "locked"}}, "policyTypes": ["Ingress"]}})
    denied = {fam: kc.until(lambda f=fam: kc.probe(lab, cli, "tcp", locked.ip_of(f), 80, timeout=1) == "")
              for fam in (4, 6)}
    print(f"NetworkPolicy deny-all ingress on a pod: IPv4 {'denied' if denied[4] else 'OPEN'}, "
          f"IPv6 {'denied' if denied[6] else 'OPEN'}")
    results["policy both families"] = all(denied.values())
    lab.kubectl("delete", "networkpolicy", "locked", "--ignore-not-found")
    lab.kubectl("delete", "pod", "dualdeny", "--wait=false")
    return all(results.values())


