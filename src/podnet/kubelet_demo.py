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


def run_kubelet_demo(nodes: int, backend: str = "vxlan", encryption: str = "", keep: bool = False) -> int:
    from .lab import FABRIC_NET
    from .lab import kubechecks as kc
    from .lab.cluster import STATE_DIR
    from .lab.images import PROBE
    from .lab.kubecluster import KubeletCluster
    t0 = time.perf_counter()
    lab = KubeletCluster(nodes, backend, encryption=encryption)
    ok = False
    try:
        lab.up()
        t = lab.timings
        print(f"podnet demo --kubelet: {nodes} nodes (kubelet + containerd {backend}), images ready in "
              f"{t['images']:.1f}s, kube-apiserver in {t['apiserver_ready']:.1f}s, nodes registered (NotReady: no "
              f"CNI yet) in {t['nodes_registered']:.1f}s")
        print(f"kubectl apply -f podnet.yaml ({lab.podnet_image}) → every node Ready in {t['apply_to_ready']:.1f}s")
        print(lab.kubectl("get", "nodes", "-o", "wide").rstrip())
        pods = kc.deploy_probe(lab, "web", 2 * nodes, PROBE)
        print("\n" + lab.kubectl("get", "pods", "-o", "wide").rstrip())
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
        ok = not bad and served == len(pods) and answer == "hostport"
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
