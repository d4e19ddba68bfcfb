"""podnet on real Kubernetes nodes: every lab node runs containerd, kubelet and kube-proxy
(nftables), registered with the lab's real control plane; podnet is installed only by `kubectl
apply` of its own manifest (the podnet image built from this checkout, imported: no registry).
What is checked is what a user checks — through the API, `kubectl exec` into pods, and the
node's own state (leases, links, nftables).

The tests share one 2-node lab (module scope) and run in file order: the last ones roll the
DaemonSet, kill the agent and drain a node away."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from podnet.lab import FABRIC_NET
from podnet.lab import kubechecks as kc
from podnet.lab.continuity import Pinger
from podnet.lab.control_plane import k8s_bin_dir
from podnet.lab.images import PROBE
from tests.helpers.kubernetes import have_kubernetes
from tests.helpers.load import condition, load_conditions

NODES = 2
HOST_PORT = 18081

missing = have_kubernetes() or ", ".join(t for t in ("containerd", "ctr", "runc", "mmdebstrap", "go")
                                         if not shutil.which(t))
pytestmark = [pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}"),
              pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def web(klab) -> list[kc.RunningPod]:  # type: ignore[no-untyped-def]
    return kc.deploy_probe(klab, "web", 6, PROBE)


def node_nft(klab, i: int) -> str:  # type: ignore[no-untyped-def]
    return subprocess.run(["ip", "netns", "exec", klab.nodes[i], "nft", "list", "ruleset"], capture_output=True,
                          text=True).stdout


def node_links(klab, i: int) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    out = subprocess.run(["ip", "netns", "exec", klab.nodes[i], "ip", "-j", "link"], capture_output=True,
                         text=True).stdout
    return list(json.loads(out or "[]"))


def test_nodes_ready_only_once_podnet_runs(klab) -> None:  # type: ignore[no-untyped-def]
    for name, (ready, message) in klab.before.items():
        assert not ready and "cni plugin not initialized" in message, (name, message)
    klab.kubectl("rollout", "status", "-n", "podnet-system", "daemonset/podnet-agent", "--timeout=120s", timeout=130)
    ds = klab.get("daemonset", "-n", "podnet-system", "podnet-agent")["status"]
    assert ds["desiredNumberScheduled"] == NODES and ds["numberReady"] == NODES, ds
    for i, h in enumerate(klab.hosts):
        bins = set(os.listdir(h.path("/opt/cni/bin")))
        assert {"podnet", "loopback", "podnet-portmap"} <= bins, bins      # copied by the init container
        confs = os.listdir(h.path("/etc/cni/net.d"))
        assert confs, f"n{i + 1}: no conflist though the node is Ready"
        assert klab.ready(klab.node(h.name))[0]
    assert klab.timings["apply_to_ready"] > 0


def test_deployment_spreads_and_every_pod_reaches_every_other(klab, web) -> None:  # type: ignore[no-untyped-def]
    assert {p.node for p in web} == {"n1", "n2"}, web
    cidrs = {h.name: klab.node(h.name)["spec"]["podCIDR"] for h in klab.hosts}
    import ipaddress
    for p in web:
        assert ipaddress.ip_address(p.ip) in ipaddress.ip_network(cidrs[p.node]), (p, cidrs)
    results = kc.pod_pairs(klab, web)
    assert len(results) == 6 * 5 * 2
    assert [k for k, ok in results.items() if not ok] == []


def test_cluster_ip_service_reaches_pods_on_both_nodes(klab, web) -> None:  # type: ignore[no-untyped-def]
    cluster_ip = klab.get("service", "web")["spec"]["clusterIP"]
    via = kc.via_service(klab, web, cluster_ip, tries=4)
    assert all(via.values()), via
    by_name = {p.name: p.node for p in web}
    assert {by_name[b] for answered in via.values() for b in answered} == {"n1", "n2"}, via
    udp = kc.probe(klab, web[0], "udp", cluster_ip, 81)
    assert udp in by_name, f"UDP through the ClusterIP: {udp!r}"


def test_services_resolve_by_name_through_coredns(klab, web) -> None:  # type: ignore[no-untyped-def]
    """Cluster DNS as kind has it: CoreDNS in kube-system behind kube-dns on 10.96.0.10, kubelet's
    clusterDNS in every pod's resolv.conf; a Service by its short and its full name."""
    dns = klab.get("service", "-n", "kube-system", "kube-dns")["spec"]
    assert dns["clusterIP"] == "10.96.0.10", dns
    names = {p.name for p in web}
    src = next(p for p in web if p.node == "n2")
    conf = klab.kubectl("exec", src.name, "--", "cat", "/etc/resolv.conf")
    assert "nameserver 10.96.0.10" in conf and "search default.svc.cluster.local" in conf, conf
    for host in ("web", "web.default.svc.cluster.local"):
        assert kc.probe(klab, src, "tcp", host, 80, timeout=5) in names, f"{host}: not resolved or not reached"
    assert kc.probe(klab, src, "udp", "web", 81, timeout=5) in names


def test_dns_under_default_deny_egress_only_when_a_policy_allows_it(klab, web) -> None:  # type: ignore[no-untyped-def]
    """As upstream: a default-deny egress policy stops name resolution too, until an egress rule
    allows port 53 to the cluster DNS."""
    klab.kubectl("create", "namespace", "dnsdeny")
    try:
        pod = {**kc.host_port_pod("asker", PROBE, "n1", 0), "metadata": {
            "name": "asker", "namespace": "dnsdeny", "labels": {kc.PROBE_LABEL: "asker"}}}
        pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
        kc.apply(klab, pod)
        asker = kc.wait_pods(klab, f"{kc.PROBE_LABEL}=asker", 1, namespace="dnsdeny")[0]
        names = {p.name for p in web}
        full = "web.default.svc.cluster.local"
        assert kc.probe(klab, asker, "tcp", full, 80, timeout=5) in names
        kc.apply(klab, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "deny-egress", "namespace": "dnsdeny"},
                        "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                                 "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                                     "kubernetes.io/metadata.name": "default"}}}], "ports": [{"port": 80}]}]}})
        wait_for(lambda: kc.probe(klab, asker, "tcp", full, 80, timeout=3) == "", "name resolution after deny", 20)
        web_ip = next(p.ip for p in web)
        assert kc.probe(klab, asker, "tcp", web_ip, 80, timeout=3) in names, "web by address stays allowed"
        kc.apply(klab, {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                        "metadata": {"name": "allow-dns", "namespace": "dnsdeny"},
                        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]}})
        wait_for(lambda: kc.probe(klab, asker, "tcp", full, 80, timeout=3) in names, "resolution after allow-dns", 20)
    finally:
        klab.kubectl("delete", "namespace", "dnsdeny", "--wait=false")


def test_host_port_on_the_node_address_then_gone_with_the_pod(klab) -> None:  # type: ignore[no-untyped-def]
    kc.apply(klab, kc.host_port_pod("hp", PROBE, "n2", HOST_PORT))
    kc.wait_pods(klab, f"{kc.PROBE_LABEL}=hp", 1)
    answer = ""
    deadline = time.monotonic() + 20
    while answer != "hp" and time.monotonic() < deadline:
        answer = kc.http_from(klab.fab, f"{FABRIC_NET}.2", HOST_PORT)
    assert answer == "hp", "kubelet → containerd → podnet's portMappings: the hostPort did not answer"
    assert str(HOST_PORT) in node_nft(klab, 1)
    klab.kubectl("delete", "pod", "hp", "--wait=true")
    assert str(HOST_PORT) not in node_nft(klab, 1), "the hostPort's nftables element outlived the pod"
    assert kc.http_from(klab.fab, f"{FABRIC_NET}.2", HOST_PORT, timeout=1) == ""


def test_one_host_port_three_pods_reached_from_a_host_network_pod(klab) -> None:  # type: ignore[no-untyped-def]
    """Kubernetes' conformance case (issue 37): pod1 127.0.0.1 TCP, pod2 the node's address TCP,
    pod3 the node's address UDP, all on one hostPort; a hostNetwork client on that node reaches
    pod1 at 127.0.0.1 with its source bound to the node's address (`curl --interface NODE_IP`),
    pod2 and pod3 at the node's address, and pod1 at 127.0.0.1 without binding too."""
    node_ip, port = f"{FABRIC_NET}.1", 54323
    specs = {"hpa": ("127.0.0.1", "TCP"), "hpb": (node_ip, "TCP"), "hpc": (node_ip, "UDP")}
    for name, (host_ip, proto) in specs.items():
        pod = kc.host_port_pod(name, PROBE, "n1", port)
        pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": port, "hostIP": host_ip,
                                                  "protocol": proto}]
        if proto == "UDP":
            pod["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["true"]}, "periodSeconds": 1}
        kc.apply(klab, pod)
        klab.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=60s", timeout=70)
    client = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostexec", "namespace": "default"},
              "spec": {"hostNetwork": True, "nodeName": "n1", "terminationGracePeriodSeconds": 1, "containers": [
                  {"name": "c", "image": PROBE, "imagePullPolicy": "Never", "command": ["/bin/pnprobe", "pause"]}]}}
    kc.apply(klab, client)
    klab.kubectl("wait", "--for=condition=Ready", "pod/hostexec", "--timeout=60s", timeout=70)
    try:
        def via(*argv: str) -> str:
            return str(klab.kubectl("exec", "hostexec", "--", "pnprobe", "probe", "-t", "5", *argv, check=False,
                                    timeout=40)).strip()
        assert via("-s", node_ip, "tcp", "127.0.0.1", str(port)) == "hpa", "127.0.0.1 with the node's source"
        assert via("tcp", node_ip, str(port)) == "hpb", "the node's address, TCP"
        assert via("udp", node_ip, str(port)) == "hpc", "the node's address, UDP"
        assert via("tcp", "127.0.0.1", str(port)) == "hpa", "127.0.0.1 without binding (masqueraded)"
    finally:
        klab.kubectl("delete", "pod", "hpa", "hpb", "hpc", "hostexec", "--wait=true")


def test_kubectl_delete_pod_releases_its_address(klab, web) -> None:  # type: ignore[no-untyped-def]
    victim = next(p for p in web if p.node == "n1")
    leases = klab.hosts[0].path("/var/lib/cni") / "networks" / "podnet"
    assert (leases / victim.ip).exists(), sorted(os.listdir(leases))
    veths = {lk["ifname"] for lk in node_links(klab, 0) if lk.get("link_netnsid") is not None}
    klab.kubectl("delete", "pod", victim.name, "--wait=true")
    assert not (leases / victim.ip).exists(), "the pod's lease outlived it"
    after = {lk["ifname"] for lk in node_links(klab, 0) if lk.get("link_netnsid") is not None}
    assert len(veths - after) == 1, (veths, after)
    routes = subprocess.run(["ip", "netns", "exec", klab.nodes[0], "ip", "route", "show", f"{victim.ip}/32"],
                            capture_output=True, text=True).stdout
    assert routes.strip() == "", routes
    kc.wait_pods(klab, f"{kc.PROBE_LABEL}=web", 6)        # the Deployment makes a new one


def test_kubelet_call_sequence_is_what_the_runtimes_tier_expects(klab) -> None:  # type: ignore[no-untyped-def]
    calls = klab.calls(0)
    by_sandbox: dict[str, list[dict[str, str]]] = {}
    for c in calls:
        by_sandbox.setdefault(c["containerid"], []).append(c)
    deleted = [seq for seq in by_sandbox.values() if any(c["command"] == "DEL" for c in seq)]
    assert deleted, calls
    for seq in deleted:
        steps = [(c["type"], c["command"]) for c in seq]
        assert ("loopback", "ADD") in steps and ("podnet", "ADD") in steps, steps
        # StopPodSandbox: DEL with the netns.  The later DELs (RemovePodSandbox, no netns) that
        # the runtimes tier sees come with a real kubelet only at its sandbox garbage collection
        # (a minute or more later, once per GC pass that finds the sandbox — how many depends on
        # how long the lab has run): each had no netns and succeeded.
        dels = [c for c in seq if c["type"] == "podnet" and c["command"] == "DEL"]
        assert dels and dels[0]["netns"], steps
        assert all(d["netns"] == "" for d in dels[1:]), steps
        # every DEL succeeds; an ADD may have been refused (test_networks.py's pod waiting for its
        # NAD: code 11, kubelet retries with a new sandbox) — kubelet's DEL then cleans it up
        assert all(c["rc"] == "0" for c in seq if c["command"] == "DEL"), seq
        refused = [c.get("code") for c in seq if c["type"] == "podnet" and c["command"] == "ADD" and c["rc"] != "0"]
        assert refused in ([], ["11"]), (seq, _runtime_said(klab, seq[0]["containerid"]))
        if not refused:
            assert all(c["rc"] == "0" for c in seq), seq
        assert not [c for c in seq if c["command"] in ("VERSION", "CHECK")], steps


def _runtime_said(klab, sandbox: str) -> list[str]:  # type: ignore[no-untyped-def]
    """containerd's log lines about a sandbox (why its CNI ADD failed)."""
    log = klab.hosts[0].dir / "containerd.log"
    return [ln[:600] for ln in log.read_text(errors="replace").splitlines() if sandbox[:12] in ln][-6:] \
        if log.exists() else []


def test_the_api_server_proxies_to_a_pod_and_to_a_service(klab, web) -> None:  # type: ignore[no-untyped-def]
    """The control plane reaches pods as a control-plane node does (kubectl get --raw …/proxy/)."""
    names = {p.name for p in kc.running_pods(klab, f"{kc.PROBE_LABEL}=web")}
    for node in ("n1", "n2"):
        pod = next(p for p in kc.running_pods(klab, f"{kc.PROBE_LABEL}=web") if p.node == node)
        assert kc.via_api_proxy(klab, "default", "pods", pod.name, 80) == pod.name, f"API server → pod on {node}"
    assert kc.via_api_proxy(klab, "default", "services", "web", 80) in names, "API server → Service web"


def test_a_validating_webhook_served_by_a_pod_is_called_and_refuses(klab) -> None:  # type: ignore[no-untyped-def]
    klab.kubectl("create", "namespace", "podnet-webhook")
    kc.apply(klab, *kc.webhook_objects(klab, "pnhook", PROBE, guarded="podnet-webhook"))
    try:
        klab.kubectl("rollout", "status", "deployment/pnhook", "--timeout=120s", timeout=130)
        allowed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine", "namespace": "podnet-webhook"}}
        refused = {**allowed, "metadata": {"name": "bad", "namespace": "podnet-webhook",
                                           "labels": {"podnet.io/deny": "yes"}}}
        # the webhook may need a moment after Ready to be in the API server's endpoints cache
        deadline, err = time.monotonic() + 30, ""
        while True:
            p = subprocess.run(["ip", "netns", "exec", klab.fab, os.path.join(k8s_bin_dir(), "kubectl"),
                                f"--kubeconfig={klab.cp.admin_kubeconfig()}", "create", "-f", "-"],
                               input=json.dumps(allowed), capture_output=True, text=True, timeout=60)
            if p.returncode == 0:
                break
            err = p.stderr
            assert time.monotonic() < deadline, f"an allowed ConfigMap was refused: {err}"
            time.sleep(0.5)
        p = subprocess.run(["ip", "netns", "exec", klab.fab, os.path.join(k8s_bin_dir(), "kubectl"),
                            f"--kubeconfig={klab.cp.admin_kubeconfig()}", "create", "-f", "-"],
                           input=json.dumps(refused), capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "refused by pnprobe webhook" in p.stderr, (p.stdout, p.stderr)
        assert klab.kubectl("get", "configmap", "-n", "podnet-webhook", "bad", check=False) == ""
    finally:
        klab.kubectl("delete", "validatingwebhookconfiguration", "pnhook", "--ignore-not-found")
        klab.kubectl("delete", "namespace", "podnet-webhook", "--wait=false")
        klab.kubectl("delete", "deployment/pnhook", "service/pnhook", "secret/pnhook-tls", "--ignore-not-found")


def test_control_plane_traffic_to_pods_meets_network_policy_as_a_nodes_does(klab) -> None:  # type: ignore[no-untyped-def]
    """A pod on n1 under default-deny ingress: neither the API server (the fabric) nor node n2 reaches
    it; a policy allowing the fabric's addresses lets both in (only the pod's own node always passes)."""
    klab.kubectl("create", "namespace", "cpnp")
    try:
        pod = {**kc.host_port_pod("guarded", PROBE, "n1", 0), "metadata": {
            "name": "guarded", "namespace": "cpnp", "labels": {kc.PROBE_LABEL: "guarded"}}}
        del pod["spec"]["containers"][0]["ports"][0]["hostPort"]
        # the deny first: the API server keeps its proxy connections open (established connections
        # are not cut by a new policy), so it must not have reached this pod before
        deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "deny", "namespace": "cpnp"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
        kc.apply(klab, deny, pod)
        ip = kc.wait_pods(klab, f"{kc.PROBE_LABEL}=guarded", 1, namespace="cpnp")[0].ip
        assert kc.http_from(klab.nodes[1], ip, 80, timeout=1) == "", "n2 → pod under default-deny"
        assert kc.via_api_proxy(klab, "cpnp", "pods", "guarded", 80, timeout=3) != "guarded", "API server under deny"
        assert kc.http_from(klab.nodes[0], ip, 80) == "guarded", "the pod's own node (kubelet probes) always passes"
        allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "from-fabric", "namespace": "cpnp"},
                 "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": f"{FABRIC_NET}.0/24"}}]}]}}
        kc.apply(klab, allow)
        wait_for(lambda: kc.http_from(klab.nodes[1], ip, 80, timeout=1) == "guarded", "n2 → pod after the allow")
        assert kc.via_api_proxy(klab, "cpnp", "pods", "guarded", 80) == "guarded", "API server after the allow"
    finally:
        klab.kubectl("delete", "namespace", "cpnp", "--wait=false")


def wait_for(cond, what: str, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(0.2)


def _cross_node_pinger(klab, web) -> Pinger:  # type: ignore[no-untyped-def]
    src = next(p for p in kc.running_pods(klab, f"{kc.PROBE_LABEL}=web") if p.node == "n1")
    dst = next(p for p in kc.running_pods(klab, f"{kc.PROBE_LABEL}=web") if p.node == "n2")
    return Pinger(klab.pod_netns("default", src.name), dst.ip, interval=0.05)


@pytest.mark.parametrize("machine", load_conditions())
def test_agent_pod_killed_pods_keep_their_traffic(klab, web, machine: str) -> None:  # type: ignore[no-untyped-def]
    """Also with every core busy (issue 34)."""
    agent = next(p for p in klab.get("pods", "-n", "podnet-system")["items"] if p["spec"]["nodeName"] == "n1")
    with condition(machine), _cross_node_pinger(klab, web) as pinger:
        klab.kubectl("delete", "pod", "-n", "podnet-system", agent["metadata"]["name"], "--wait=true")
        klab.kubectl("rollout", "status", "-n", "podnet-system", "daemonset/podnet-agent", "--timeout=120s",
                     timeout=130)
        result = pinger.stop()
    assert result.sent > 20 and result.lost == 0, result
    klab.wait_nodes(ready=True)
    kc.wait_pods(klab, f"{kc.PROBE_LABEL}=web", 6)


@pytest.mark.parametrize("machine", load_conditions())
def test_rolling_update_to_a_new_image_tag_keeps_traffic(klab, web, machine: str) -> None:  # type: ignore[no-untyped-def]
    """Also with every core busy (issue 34): each condition rolls to a tag of its own."""
    from podnet.lab.images import podnet_image
    from podnet.lab.kubecluster import SOURCE
    name, tar = podnet_image(SOURCE, tag=f"next-{machine}")
    klab.load_image(str(tar))
    with condition(machine), _cross_node_pinger(klab, web) as pinger:
        klab.apply_podnet(name)
        klab.kubectl("rollout", "status", "-n", "podnet-system", "daemonset/podnet-agent", "--timeout=240s",
                     timeout=250)
        result = pinger.stop()
    images = {c["image"] for p in klab.get("pods", "-n", "podnet-system")["items"] for c in p["spec"]["containers"]}
    assert images == {name}, images
    print(f"rolling update: {result.sent} probes, {result.lost} lost, longest gap {result.longest_gap:.3f}s")
    assert result.sent > 20 and result.lost == 0, result
    pairs = kc.pod_pairs(klab, kc.running_pods(klab, f"{kc.PROBE_LABEL}=web")[:4], protos=("tcp",))
    assert all(pairs.values()), pairs


def test_drain_and_delete_node_reclaims_its_cidr(klab) -> None:  # type: ignore[no-untyped-def]
    gone = klab.node("n2")["spec"]["podCIDR"]
    klab.kubectl("patch", "deployment", "web", "--type=json", "-p",
                 '[{"op":"replace","path":"/spec/template/spec/topologySpreadConstraints/0/whenUnsatisfiable",'
                 '"value":"ScheduleAnyway"}]')
    kc.wait_pods(klab, f"{kc.PROBE_LABEL}=web", 6, timeout=120)
    klab.kubectl("drain", "n2", "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=120s",
                 timeout=130)
    klab.remove_node(1)
    deadline = time.monotonic() + 30
    while True:
        routes = subprocess.run(["ip", "netns", "exec", klab.nodes[0], "ip", "route"], capture_output=True,
                                text=True).stdout
        if gone not in routes:
            break
        assert time.monotonic() < deadline, f"n1 still routes the deleted node's {gone}: {routes}"
        time.sleep(0.2)
    pods = kc.wait_pods(klab, f"{kc.PROBE_LABEL}=web", 6, timeout=120)
    assert {p.node for p in pods} == {"n1"}
    assert [n["metadata"]["name"] for n in klab.get("nodes")["items"]] == ["n1"]
    results = kc.pod_pairs(klab, pods[:3], protos=("tcp",))
    assert all(results.values()), results
