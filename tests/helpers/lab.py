"""What a lab leaves on the machine: its namespaces and the processes of the kinds it starts."""
from __future__ import annotations

import os
import subprocess

# process names (comm) a lab or demo starts, directly or through its agents and kubelets
DAEMONS = {"bird", "wireguard-go", "etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "kubelet",
           "kube-proxy", "containerd", "containerd-shim", "containerd-shim-runc-v2"[:15], "runc", "coredns",
           "dnsmasq", "gunicorn", "pnprobe", "pause"}


def lab_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("pnlab-")}


def lab_processes() -> dict[int, str]:
    """pid → kind of every process a lab could have started (zombies included: not yet gone)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm in DAEMONS:
            out[int(entry)] = comm
        elif "podnet.cli agent" in cmdline or "podnet agent" in cmdline:
            out[int(entry)] = "podnet agent"
    return out
