"""`podnet demo --kubelet --networks`: pods with three networks on real kubelets, no Multus —
eth0 on the cluster network (the default route, NetworkPolicy's), net1 a macvlan on the fabric
(the datacenter network) and net2 a NIC of the node's own moved in by host-device (the storage
network: what a dedicated port or an SR-IOV VF is on a real node), each from a
NetworkAttachmentDefinition named in the pod's `k8s.v1.cni.cncf.io/networks`.  Checks each network
from the peers that live on it, prints the `network-status` podnet wrote, deletes the pods and
checks every node got its NIC back and holds no address of them.  PASS only if all hold."""
from __future__ import annotations

import json
import sys
import time
from typing import Any


def run_networks_demo(nodes: int, keep: bool = False) -> int:
    from .lab import FABRIC_NET
    from .lab import attachchecks as ac
    from .lab import kubechecks as kc
    from .lab.images import PROBE
    from .lab.kubecluster import KubeletCluster
    t0 = time.perf_counter()
    nodes = max(nodes, 2)
    lab = KubeletCluster(nodes)
    results: dict[str, bool] = {}
    names = [f"multi-{i + 1}" for i in range(nodes)]
    try:
        lab.up()
        storage_host = ac.add_storage_network(lab)
        print(f"podnet demo --kubelet --networks: {nodes} nodes Ready {lab.timings['apply_to_ready']:.1f}s after "
              f"kubectl apply; fabric {FABRIC_NET}.0/24 (up0 on each node), storage network {ac.STORAGE_NET}.0/24 "
              f"(a spare NIC {ac.NODE_STORAGE_NIC} on each node)")
        kc.apply(lab, ac.nad("fabric", "default", ac.static_macvlan("fabric")),
                 ac.nad("storage", "default", ac.storage_device("storage")))
        addrs = {n: (f"{FABRIC_NET}.{100 + i}", f"{ac.STORAGE_NET}.{11 + i}") for i, n in enumerate(names)}
        for i, n in enumerate(names):
            sel = [{"name": "fabric", "ips": [f"{addrs[n][0]}/24"], "mac": f"02:97:00:00:01:{i + 1:02x}"},
                   {"name": "storage", "ips": [f"{addrs[n][1]}/24"]}]
            kc.apply(lab, ac.pod_with_networks(n, PROBE, f"n{i + 1}", sel))
        pods = {n: ac.wait_running(lab, n) for n in names}
        print("\n" + lab.kubectl("get", "pods", "-o", "wide").rstrip())
        for n in names:
            print(f"\n{n} {ac.STATUS}:\n{json.dumps(ac.network_status(pods[n]), indent=2)}")
        results.update(_status_checks(pods, addrs))
        results.update(_reachability(lab, pods, addrs, storage_host))
        lab.kubectl("delete", "pod", *names, "--wait=true")
        back = all(ac.node_has_link(lab, i, ac.NODE_STORAGE_NIC) for i in range(nodes))
        print(f"\npods deleted: every node has its {ac.NODE_STORAGE_NIC} back: {'ok' if back else 'FAILED'}")
        results["each node's storage NIC given back on DEL"] = back
        macvlans = [m for i in range(nodes) for m in _macvlans(lab, i)]
        results["no macvlan left on any node"] = not macvlans
    except Exception as e:  # noqa: BLE001 - the report says what failed; teardown still runs
        print(f"podnet demo failed: {e}", file=sys.stderr)
        results["the demo ran to the end"] = False
    finally:
        if not keep:
            lab.down()
    return kc.demo_verdict(results, t0)


def _status_checks(pods: dict[str, dict[str, Any]], addrs: dict[str, tuple[str, str]]) -> dict[str, bool]:
    """network-status lists eth0 (default, the Pod IP), net1 and net2 with the addresses asked for."""
    from .lab import attachchecks as ac
    ok = True
    for n, p in pods.items():
        st = ac.network_status(p)
        got = [(s.get("interface"), tuple(s.get("ips", [])), bool(s.get("default"))) for s in st]
        ok &= got == [("eth0", (p["status"]["podIP"],), True), ("net1", (addrs[n][0],), False),
                      ("net2", (addrs[n][1],), False)]
    return {"network-status: eth0 (default), net1, net2 with their addresses": ok}


def _reachability(lab: Any, pods: dict[str, dict[str, Any]], addrs: dict[str, tuple[str, str]],
                  storage_host: str) -> dict[str, bool]:
    from .lab import attachchecks as ac
    from .lab import kubechecks as kc
    from .lab import underlaychecks as uc
    names = list(pods)
    out: dict[str, bool] = {}
    pairs = [(a, b) for a in names for b in names if a != b]
    eth0 = {(a, b): ac.probe_from(lab, a, "tcp", pods[b]["status"]["podIP"], 80) == b for a, b in pairs}
    print(f"\neth0 (cluster network) pod → pod across nodes: {sum(eth0.values())}/{len(eth0)}")
    out["eth0: pod → pod across nodes"] = all(eth0.values())
    net1 = {(a, b): ac.probe_from(lab, a, "tcp", addrs[b][0], 80) == b for a, b in pairs}
    print(f"net1 (fabric macvlan) pod → pod across nodes: {sum(net1.values())}/{len(net1)}")
    out["net1: pod → pod over the fabric"] = all(net1.values())
    fab = {n: kc.http_from(lab.fab, addrs[n][0], 80) == n for n in names}
    print(f"net1: fabric host → each pod's net1: {sum(fab.values())}/{len(fab)}")
    out["net1: fabric host → pods"] = all(fab.values())
    with uc.fabric_server(lab) as server:
        seen = {n: ac.probe_from(lab, n, "tcp", server, 80, path="/ip") == addrs[n][0] for n in names}
    print(f"net1: pods → fabric host {server}, seen as their own net1 address: {sum(seen.values())}/{len(seen)}")
    out["net1: the fabric sees the pod's net1 address"] = all(seen.values())
    net2 = {(a, b): ac.probe_from(lab, a, "tcp", addrs[b][1], 80) == b for a, b in pairs}
    print(f"net2 (storage, host-device) pod → pod: {sum(net2.values())}/{len(net2)}")
    out["net2: pod → pod over the storage network"] = all(net2.values())
    storage = {n: kc.http_from(lab.fab, addrs[n][1], 80) == n for n in names}
    print(f"net2: storage host {storage_host} → each pod's net2: {sum(storage.values())}/{len(storage)}")
    out["net2: storage host → pods"] = all(storage.values())
    gone = [i for i in range(len(names)) if ac.node_has_link(lab, i, ac.NODE_STORAGE_NIC)]
    print(f"net2 is the node's own NIC: {ac.NODE_STORAGE_NIC} gone from every node while its pod runs: "
          f"{'ok' if not gone else 'FAILED'}")
    out["net2: the node's NIC moved into the pod"] = not gone
    return out


def _macvlans(lab: Any, i: int) -> list[str]:
    import subprocess
    links = json.loads(subprocess.run(["ip", "-n", lab.nodes[i], "-j", "-d", "link"], capture_output=True,
                                      text=True).stdout or "[]")
    return [lk["ifname"] for lk in links if lk.get("linkinfo", {}).get("info_kind") == "macvlan"]
