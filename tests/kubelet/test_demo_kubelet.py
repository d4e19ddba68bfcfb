"""`podnet demo --kubelet --nodes 2`, as a user runs it: PASS, and nothing of it left on the machine
(namespaces, cgroups, containers, the lab's directories, mounts)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.kubernetes import have_kubernetes
from tests.helpers.lab import lab_processes

missing = have_kubernetes() or ", ".join(t for t in ("containerd", "ctr", "runc", "mmdebstrap", "go")
                                         if not shutil.which(t))
pytestmark = [pytest.mark.skipif(bool(missing) and not os.environ.get("CI"), reason=f"needs {missing}"),
              pytest.mark.timeout(600)]


def lab_traces() -> dict[str, set[str]]:
    """Everything a lab can leave on the machine, by kind."""
    netns = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    cgroups = {str(p) for p in Path("/sys/fs/cgroup").glob("*/pnlab-*")}
    dirs = {str(p) for p in Path(tempfile.gettempdir()).glob("pnlab-*")}
    mounts = {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines() if "pnlab-" in line}
    procs = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "pnlab-" in cmd or "pnprobe" in cmd:
                procs.add(cmd)
    return {"netns": {n for n in netns if n.startswith("pnlab-")}, "cgroups": cgroups, "dirs": dirs,
            "mounts": mounts, "procs": procs,
            # kubelet, containerd, its shims, kube-proxy, the control plane, etcd, agents: gone the
            # moment the demo returns (issue 37), not a moment later
            "daemons": {f"{pid} {kind}" for pid, kind in lab_processes().items()}}


def test_demo_kubelet_passes_and_leaves_nothing() -> None:
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--nodes", "2"], capture_output=True,
                       text=True, timeout=540)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    assert re.search(r"pod → pod by Pod IP: (\d+)/\1 ", p.stdout), p.stdout
    assert "every node Ready in" in p.stdout and "hostPort 18080 on n1" in p.stdout
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left


def test_underlay_demo_passes_every_check_and_leaves_nothing() -> None:
    """`podnet demo --kubelet --pod-network underlay --nodes 2` (issue 30): pods on the fabric, every
    check printed and held, nothing of the lab left the moment it returns."""
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--pod-network", "underlay", "--nodes",
                        "2"], capture_output=True, text=True, timeout=540)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    for line in (r"pod → pod by Pod IP: (\d+)/\1 ", r"fabric host \S+ \(not a node\) → pods directly: (\d+)/\1",
                 r"seen with their own address \(no NAT\)", r"backends on n1, n2", r"client's own address: (\d+)/\1",
                 r"hostPort 18080 on n1 from the fabric: ok", r"NodePort \d+ from the fabric: n1 → web-\S+, n2 → web-",
                 r"deny-all ingress stops the pod across nodes and the fabric: ok",
                 r"an allow from the client's label lets it in, the fabric stays out: ok"):
        assert re.search(line, p.stdout), f"missing: {line}\n{p.stdout}"
    main_tables = p.stdout.split("nodes' main routing tables")[1].split("tables for what")[0]
    assert "via 10.97.0.1 " not in main_tables and "via 10.97.0.2 " not in main_tables, main_tables
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left


@pytest.mark.parametrize("backend", ["vxlan", "host-gw"])
def test_dual_stack_demo_passes_and_leaves_nothing(backend: str) -> None:
    """`podnet demo --kubelet --ip-family dual --nodes 2` (issue 34): pods with both families in
    status.podIPs, pod → pod in each, a dual-stack Service on both ClusterIPs, its name resolving
    to both through CoreDNS, NetworkPolicy in both families — nothing left afterwards."""
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--ip-family", "dual", "--nodes", "2",
                        "--backend", backend], capture_output=True, text=True, timeout=540)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    for line in (r"status.podIPs: (\d+)/\1 pods with an IPv4 and an IPv6", r"IPv4 Pod IP: (\d+)/\1",
                 r"IPv6 Pod IP: (\d+)/\1", r"Service web \[10\.96\.[\d.]+\]:80: (\d+)/\1",
                 r"Service web \[fd96::[\da-f:]+\]:80: (\d+)/\1", "both ClusterIPs",
                 "IPv4 denied, IPv6 denied", r"pod → Service by name .*: ok"):
        assert re.search(line, p.stdout), f"missing: {line}\n{p.stdout}"
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left


def test_networks_demo_passes_every_check_and_leaves_nothing() -> None:
    """`podnet demo --kubelet --networks --nodes 2` (issue 32): eth0, net1 on the fabric and net2 a
    node's own NIC, each reached from its peers; the network-status printed; the NIC back on DEL."""
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--networks", "--nodes", "2"],
                       capture_output=True, text=True, timeout=540)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    for line in (r"eth0 \(cluster network\) pod → pod across nodes: 2/2", r"net1 \(fabric macvlan\) pod → pod across "
                 r"nodes: 2/2", r"seen as their own net1 address: 2/2", r"net2 \(storage, host-device\) pod → pod: 2/2",
                 r"storage host \S+ → each pod's net2: 2/2", r"st0 gone from every node while its pod runs: ok",
                 r"every node has its st0 back: ok", r'"interface": "net2"'):
        assert re.search(line, p.stdout), f"missing: {line}\n{p.stdout}"
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left


def test_underlay_demo_with_neutron_ipam_passes_and_leaves_nothing() -> None:
    """`podnet demo --kubelet --pod-network underlay --ipam neutron --nodes 2` (issue 31): a real
    Neutron on the fabric, every pod a Neutron port (its address and MAC), each node VM port with a
    pair per block covering its pods, and every underlay check; nothing left afterwards."""
    before = lab_traces()
    p = subprocess.run([sys.executable, "-m", "podnet.cli", "demo", "--kubelet", "--pod-network", "underlay", "--ipam",
                        "neutron", "--nodes", "2"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0 and "podnet demo: PASS" in p.stdout, p.stdout + p.stderr
    for line in (r"Neutron ports of the pods", r"port default/web-\S+/eth0 \S+ mac fa:16:3e:",
                 r"n1 10\.97\.0\.1: pairs 10\.97\.0\.\d+/28", r"n2 10\.97\.0\.2: pairs 10\.97\.0\.\d+/28",
                 r"backends saw each client's own address: (\d+)/\1"):
        assert re.search(line, p.stdout), f"missing: {line}\n{p.stdout}"
    after = lab_traces()
    left = {kind: after[kind] - before[kind] for kind in after if after[kind] - before[kind]}
    assert left == {}, left
