"""Soak: thousands of random CNI operations against the installed launchers and one agent, with the
agent restarted (SIGTERM or SIGKILL) at random, then a census of what is left.

    .venv/bin/python bench/soak.py [--ops 10000] [--pods 30] [--seed 1] [--restart-every 400] [--json out.json]

Networks: a bridge (host-local), ptp (host-local) and the Kubernetes chain (bridge → portmap →
bandwidth → tuning, with runtimeConfig portMappings and bandwidth), each driven as a runtime does:
ADD (a failed ADD is followed by DEL), CHECK with the ADD result, DEL with it, and now and then a
GC naming the pods that are up.  Reports: operations and errors by class, agent RSS over time,
and leftovers after the final DEL of every pod (links, leases, nftables elements, qdiscs).
Runs in namespaces of its own (root); the machine's interfaces are not touched.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tests.helpers.cni import netns_add, netns_del, nsexec, run_chain, unique


def networks(data: str, sock: str) -> dict[str, dict[str, Any]]:
    def hl(subnet: str) -> dict[str, Any]:
        return {"type": "podnet-host-local", "subnet": subnet, "dataDir": data}
    return {
        "bridge": {"cniVersion": "1.1.0", "name": "sk-bridge", "plugins": [
            {"type": "podnet-bridge", "bridge": "skbr0", "isGateway": True, "ipMasq": True, "agentSocket": sock,
             "ipam": hl("10.201.0.0/16")}]},
        "ptp": {"cniVersion": "1.1.0", "name": "sk-ptp", "plugins": [
            {"type": "podnet-ptp", "ipMasq": True, "agentSocket": sock, "ipam": hl("10.202.0.0/16")}]},
        "k8s": {"cniVersion": "1.1.0", "name": "sk-k8s", "plugins": [
            {"type": "podnet-bridge", "bridge": "skbr1", "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "agentSocket": sock, "ipam": hl("10.203.0.0/16")},
            {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "snat": True, "agentSocket": sock},
            {"type": "podnet-bandwidth", "capabilities": {"bandwidth": True}, "agentSocket": sock},
            {"type": "podnet-tuning", "capabilities": {"mac": True}, "agentSocket": sock,
             "dataDir": os.path.join(data, "tuning")}]},
    }


class Agent:
    def __init__(self, sandbox: str, sock: str, log: str) -> None:
        self.sandbox, self.sock, self.log = sandbox, sock, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.sandbox, sys.executable, "-m", "podnet.cli", "agent",
                                      "--socket", self.sock, "--log-file", self.log],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("agent did not start")
            time.sleep(0.02)

    def restart(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self.start()

    def rss_mib(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--pods", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--restart-every", type=int, default=400,
                    help="mean operations between agent restarts (0: never — for the RSS trend)")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = tempfile.mkdtemp(prefix="pnsoak-")
    bin_dir = os.path.join(work, "bin")
    subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--bin-dir", bin_dir], check=True,
                   capture_output=True)
    sandbox = unique("pnsoak-")
    netns_add(sandbox)
    nsexec(sandbox, "ip", "link", "set", "lo", "up")
    pods = [unique("pnsoak-p") for _ in range(a.pods)]
    for p in pods:
        netns_add(p)
    sock = os.path.join(work, "agent.sock")
    nets = networks(os.path.join(work, "ipam"), sock)
    agent = Agent(sandbox, sock, os.path.join(work, "agent.log"))
    up: dict[str, tuple[str, Any]] = {}                      # pod → (network, ADD result)
    counts: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    rss: list[tuple[int, float]] = [(0, agent.rss_mib())]
    restarts = 0
    rc = {"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}],
          "bandwidth": {"ingressRate": 10_000_000, "ingressBurst": 100_000, "egressRate": 10_000_000,
                        "egressBurst": 100_000}, "mac": ""}
    t0 = time.monotonic()
    try:
        for n in range(1, a.ops + 1):
            pod = rng.choice(pods)
            ns = f"/run/netns/{pod}"
            if pod in up:
                net, res = up[pod]
                op = rng.choices(["DEL", "CHECK", "GC"], [60, 35, 5])[0]
            else:
                net, res, op = rng.choice(list(nets)), None, "ADD"
            runtime = dict(rc, portMappings=[{"hostPort": 30000 + pods.index(pod), "containerPort": 80,
                                              "protocol": "tcp"}], mac=f"02:00:00:5e:{pods.index(pod):02x}:01")
            if op == "GC":
                valid = [{"containerID": p, "ifname": "eth0"} for p, (nn, _) in up.items() if nn == net]
                conflist = {**nets[net], "plugins": [dict(p, **{"cni.dev/valid-attachments": valid})
                                                     for p in nets[net]["plugins"]]}
                call = run_chain(bin_dir, conflist, "GC", netns="", sandbox=sandbox, container_id="gc")
            else:
                call = run_chain(bin_dir, nets[net], op, netns=ns, sandbox=sandbox, container_id=pod,
                                 runtime_config=runtime, prev=res if op != "ADD" else None)
            counts[op] += 1
            if call.rc != 0:
                doc = call.out if isinstance(call.out, dict) else {}
                errors[f"{op} {net} code {doc.get('code')}: {str(doc.get('msg', call.stdout))[:90]}"] += 1
            if op == "ADD":
                if call.rc == 0:
                    up[pod] = (net, call.out)
                else:
                    run_chain(bin_dir, nets[net], "DEL", netns=ns, sandbox=sandbox, container_id=pod,
                              runtime_config=runtime)
            elif op == "DEL" and call.rc == 0:
                del up[pod]
            if a.restart_every and rng.random() < 1 / a.restart_every:
                agent.restart(rng.choice([signal.SIGTERM, signal.SIGKILL]))
                restarts += 1
            if n % 200 == 0:
                rss.append((n, agent.rss_mib()))
                print(f"{n} ops, {len(up)} pods up, {sum(errors.values())} errors, agent RSS {rss[-1][1]:.1f} MiB, "
                      f"{restarts} restarts, {time.monotonic() - t0:.0f}s", flush=True)
        for pod, (net, res) in list(up.items()):
            run_chain(bin_dir, nets[net], "DEL", netns=f"/run/netns/{pod}", sandbox=sandbox, container_id=pod,
                      prev=res)
            del up[pod]
        leftovers = census(sandbox, pods, os.path.join(work, "ipam"))
    finally:
        agent.stop()
        for p in pods:
            netns_del(p)
        netns_del(sandbox)
    report = {"ops": dict(counts), "errors": dict(errors), "restarts": restarts, "rss_mib": rss,
              "rss_growth_mib": round(rss[-1][1] - rss[1][1], 1) if len(rss) > 2 else 0.0,
              "leftovers": leftovers, "seconds": round(time.monotonic() - t0)}
    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if not errors and not any(leftovers.values()) else 1


def census(sandbox: str, pods: list[str], ipam: str) -> dict[str, Any]:
    links = json.loads(nsexec(sandbox, "ip", "-d", "-j", "link", "show").stdout)
    extra = [lk["ifname"] for lk in links if lk["ifname"] != "lo"
             and lk.get("linkinfo", {}).get("info_kind") != "bridge"]
    in_pods = {p: [lk["ifname"] for lk in json.loads(nsexec(p, "ip", "-j", "link", "show").stdout) if lk["ifname"] != "lo"]
               for p in pods}
    leases = [os.path.join(r, f) for r, _, fs in os.walk(ipam) for f in fs if f[:1].isdigit()]
    ruleset = nsexec(sandbox, "nft", "list", "ruleset").stdout
    elements = [line.strip() for line in ruleset.splitlines() if "comment" in line and "pnsoak" in line]
    return {"host_links": extra, "pod_links": {p: v for p, v in in_pods.items() if v}, "leases": leases,
            "nft_elements": elements}


if __name__ == "__main__":
    sys.exit(main())
