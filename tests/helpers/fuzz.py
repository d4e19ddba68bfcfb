"""A seeded fuzzer for podnet's installed launchers: random configs and environments for every
plugin type, run as a runtime runs them (through the agent, or in-process), checked for what a
runtime relies on:

  - the process ends within CASE_TIMEOUT, with exit status 0 or 1;
  - exit 1: stdout is the CNI error JSON (integer code, string msg), never a Python exception
    text (a code-999 "AttributeError: …" means input reached code that did not validate it);
  - exit 0 on ADD: stdout is a result object;
  - no traceback on stdout;
  - after DEL: nothing left — no link in the pod but lo, no new link on the host but bridges, no
    host-local lease, no nftables rule naming the container, no cluster-IPAM handle;
  - (differential) a case run in-process and through the agent gets the same exit status and code.

Deterministic for a seed: the same --seed gives the same cases.  Used by
tests/reliability/test_fuzz.py; `--fuzz-cases N --fuzz-seed S` (pytest options) for longer runs.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers.cni import netns_add, netns_del, nsexec, unique
from tests.helpers.etcd import Etcd, have_etcd

CASE_TIMEOUT = 20.0
PY_EXCEPTION = re.compile(r"^(AttributeError|TypeError|KeyError|IndexError|ValueError|UnicodeEncodeError|"
                          r"UnicodeDecodeError|RecursionError|AssertionError|ZeroDivisionError|OverflowError|"
                          r"NameError|RuntimeError|UnboundLocalError|StopIteration|NotImplementedError)\b")
CHAINED = {"portmap", "bandwidth", "tuning", "firewall", "sbr", "leg"}
NOT_IN_KERNEL = {"ipvlan", "vlan", "dummy", "sriov"}  # no such link type in this kernel; no SR-IOV hardware
NO_SERVER = {"dhcp": "no DHCP server in the rig", "neutron-ipam": "no Neutron in the rig (tests/neutron runs one)"}

STRINGS = ["", " ", "eth0", "lo", "a" * 16, "a" * 300, "../../etc/passwd", "a/b", "x\ny", "x\x00y", "%d", "eth%d",
           "é", "🙂", "\udcff" * 0 + "\\", "'", '"', "0", "-1", "true", "null", "10.0.0.1", "10.0.0.0/8",
           "fd00::1", "fd00::/64", "::", "0.0.0.0/0", "256.1.1.1", "10.0.0.1/33", "02:00:00:00:00:01",
           "ff:ff:ff:ff:ff:ff", "zz:zz", "tcp", "udp", "sctp", "TCP", "bridge", "private", "vepa", "passthru",
           "l2", "l3", "l3s", "open", "isolated", "same-bridge", "macvlan", "ipvlan", "ptp", "leg0", "/",
           "/proc/self/ns/net", "/dev/null",
           "net.ipv4.ip_forward", "net/ipv4/conf/eth0/mtu", "kernel.panic", "${IFNAME}", "1.1.0", "0.3.1",
           "9.9.9"]
NUMBERS = [0, 1, -1, 7, 15, 16, 24, 26, 29, 32, 64, 80, 128, 1400, 1500, 65535, 65536, 2**31, 2**63, -2**63, 10**30,
           0.5, 1e308]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(STRINGS)
    if roll < 0.55:
        return rng.choice(NUMBERS)
    if roll < 0.65:
        return rng.choice([True, False, None])
    if depth >= 3:
        return None
    if roll < 0.83:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [*STRINGS, "subnet", "address", "gateway", "dst", "hostPort", "containerPort", "protocol", "type"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


@dataclass
class Rig:
    """Where cases run: the sandbox standing in for the node, and the state paths the bases use."""
    bin_dir: str
    sandbox: str
    data_dir: str
    agent_socket: str             # "" in-process (a path nobody listens on is used)
    etcd_url: str = ""
    master: str = "fzm0"          # macvlan / dhcp master in the sandbox
    agent_log: str = ""


@contextlib.contextmanager
def one_rig(bin_dir: str, tmp: Path) -> Iterator[Rig]:
    """One sandbox (the node), a macvlan master in it, etcd for the cluster IPAM, an agent."""
    from tests.conftest import Agent
    sandbox = unique("pnt-fz-")
    netns_add(sandbox)
    nsexec(sandbox, "ip", "link", "set", "lo", "up")
    nsexec(sandbox, "ip", "link", "add", "fzm0", "type", "veth", "peer", "name", "fzm0p")
    nsexec(sandbox, "ip", "link", "set", "fzm0", "up")
    nsexec(sandbox, "ip", "addr", "add", "192.0.2.1/24", "dev", "fzm0")      # the node's address (the leg's)
    etcd = Etcd(netns=sandbox) if have_etcd() else None          # where the launchers can reach it
    agent = None
    try:
        if etcd is not None:
            etcd.wait_healthy()
        agent = Agent(sandbox, str(tmp / "agent.sock"), str(tmp / "agent.log"), ["--state-dir", str(tmp / "state")])
        yield Rig(bin_dir, sandbox, str(tmp / "data"), agent.sock, etcd.url if etcd else "", agent_log=agent.log)
    finally:
        if agent is not None:
            agent.stop()
        if etcd is not None:
            etcd.remove()
        netns_del(sandbox)


def bases(rig: Rig, device: str, port: int) -> dict[str, dict[str, Any]]:
    """A valid config per plugin type (the mutations start from these)."""
    dd = rig.data_dir

    def hl(subnet: str) -> dict[str, Any]:
        return {"type": "podnet-host-local", "subnet": subnet, "dataDir": dd}
    return {
        "bridge": {"type": "podnet-bridge", "bridge": "fzbr0", "isGateway": True, "ipMasq": True,
                   "ipam": hl("10.123.0.0/16")},
        "host-local": {"type": "podnet-host-local", "ipam": hl("10.122.0.0/16")},
        "static": {"type": "podnet-static", "ipam": {"type": "podnet-static", "addresses": [
            {"address": "10.124.0.5/24", "gateway": "10.124.0.1"}], "routes": [{"dst": "0.0.0.0/0"}]}},
        "loopback": {"type": "podnet-loopback"},
        "ptp": {"type": "podnet-ptp", "ipMasq": False, "mtu": 1400, "ipam": hl("10.125.0.0/16")},
        "macvlan": {"type": "podnet-macvlan", "master": rig.master, "mode": "bridge", "ipam": hl("10.126.0.0/16")},
        "ipvlan": {"type": "podnet-ipvlan", "master": rig.master, "mode": "l2", "ipam": hl("10.126.0.0/16")},
        "vlan": {"type": "podnet-vlan", "master": rig.master, "vlanId": 5, "ipam": hl("10.126.0.0/16")},
        "dummy": {"type": "podnet-dummy", "ipam": hl("10.126.0.0/16")},
        "host-device": {"type": "podnet-host-device", "device": device},
        "portmap": {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "snat": True,
                    "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]}},
        "bandwidth": {"type": "podnet-bandwidth", "ingressRate": 8000000, "ingressBurst": 800000,
                      "egressRate": 8000000, "egressBurst": 800000},
        "tuning": {"type": "podnet-tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.IFNAME.log_martians": "1"},
                   "dataDir": os.path.join(dd, "tuning")},
        "firewall": {"type": "podnet-firewall", "ingressPolicy": "same-bridge"},
        "sbr": {"type": "podnet-sbr"},
        "sriov": {"type": "podnet-sriov", "deviceID": "0000:af:06.0", "vlan": 10, "spoofchk": "on"},
        "leg": {"type": "podnet-leg", "master": rig.master, "routes": ["10.96.0.0/16"]},
        "cluster-ipam": {"type": "podnet-cluster-ipam", "ipam": {
            "type": "podnet-cluster-ipam", "etcdEndpoints": [rig.etcd_url or "http://127.0.0.1:9"],
            "prefix": "/fuzz/", "subnet": "10.127.0.0/16", "node": "fz"}},
        "dhcp": {"type": "podnet-macvlan", "master": rig.master, "ipam": {"type": "podnet-dhcp", "timeout": 1}},
        # nothing listens on port 9: every well-formed request is code 11 after parsing, the rest 4/6/7
        "neutron-ipam": {"type": "podnet-neutron-ipam", "ipam": {
            "type": "podnet-neutron-ipam", "neutronUrl": "http://127.0.0.1:9", "network": "fz", "node": "fz",
            "nodeAddress": "10.0.0.5", "timeout": 1}},
        "podnet": {"type": "podnet", "mode": "bridge", "bridge": "fzbr2", "isGateway": True, "ipMasq": True,
                   "hairpinMode": True, "ipam": hl("10.128.0.0/16"), "portmap": {"snat": True},
                   "bandwidth": {"ingressRate": 8000000, "ingressBurst": 800000},
                   "tuning": {"sysctl": {"net.ipv4.conf.IFNAME.log_martians": "1"}, "dataDir": os.path.join(dd, "tuning")},
                   "capabilities": {"portMappings": True, "bandwidth": True},
                   "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80, "protocol": "tcp"}],
                                     "bandwidth": {"egressRate": 8000000, "egressBurst": 800000}}},
        # the one-exec plugin in underlay mode (every other `podnet` case): macvlan eth0 + the leg
        "podnet-underlay": {"type": "podnet", "mode": "macvlan", "master": rig.master, "macvlanMode": "bridge",
                            "ipam": {**hl("10.129.0.0/16"), "gateway": "10.129.0.1"}, "leg": {"routes": ["10.96.0.0/16"]},
                            "portmap": {"snat": True}, "capabilities": {"portMappings": True},
                            "runtimeConfig": {"portMappings": [{"hostPort": port, "containerPort": 80,
                                                                "protocol": "tcp"}]}},
    }


CARRIER = {"type": "podnet-bridge", "bridge": "fzbr1", "isGateway": True, "ipMasq": False}


@dataclass
class Case:
    number: int
    ptype: str
    conf: dict[str, Any] | bytes       # bytes: a raw stdin (broken JSON …)
    env: dict[str, str]
    then: list[str] = field(default_factory=list)   # commands after the first (CHECK, DEL …)
    mutated: bool = False
    cid: str = ""                                    # the generated container ID (env may carry another)


def mutate(rng: random.Random, conf: dict[str, Any]) -> dict[str, Any]:
    """1–3 changes: a key (top level or in ipam/runtimeConfig) set to a random value or removed,
    an unknown key added, or a whole section replaced."""
    conf = copy.deepcopy(conf)
    for _ in range(rng.randint(1, 3)):
        holders = [conf] + [v for v in conf.values() if isinstance(v, dict)]
        target = rng.choice(holders)
        keys = [k for k in target if k not in ("type",)] or ["x"]
        op = rng.random()
        key = rng.choice(keys)
        if op < 0.55:
            target[key] = random_value(rng)
        elif op < 0.7:
            target.pop(key, None)
        elif op < 0.85:
            target[rng.choice(STRINGS)] = random_value(rng)
        elif op < 0.93:
            conf["cniVersion"] = rng.choice(["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "2.0.0",
                                             "", 1, None, "1.0"])
        else:
            conf["name"] = random_value(rng)
    return conf


def make_case(rng: random.Random, number: int, ptype: str, base: dict[str, Any], cid: str, netns: str) -> Case:
    conf: dict[str, Any] | bytes = {"cniVersion": "1.0.0", "name": "fz", **copy.deepcopy(base)}
    mutated = rng.random() < 0.85
    if mutated:
        roll = rng.random()
        if roll < 0.04:
            conf = rng.choice([b"", b"{", b"[]", b"null", b'{"cniVersion":"1.0.0"}', b"\xff\xfe", b'"x"',
                               b'{"cniVersion":"1.0.0","name":"fz","type":"x","deep":' + b"[" * 3000 + b"]" * 3000
                               + b"}"])
        else:
            conf = mutate(rng, conf)  # type: ignore[arg-type]
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": "lo" if ptype == "loopback" else "eth0"}
    if mutated and rng.random() < 0.25:
        key = rng.choice(["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_COMMAND", "CNI_PATH"])
        env[key] = rng.choice(["", " ADD", "ADD ", "add", "BOGUS", "eth%d", "a" * 200, "../x", "/proc/self/ns/net",
                               "/nonexistent", "/etc/passwd", "K8S_POD_NAME=x;IgnoreUnknown=1", "A", "=;=",
                               "x\ty", "é", cid + "-" + "z" * 120])
    then = ["DEL"]
    if rng.random() < 0.2:
        then = ["CHECK", "DEL"]
    if rng.random() < 0.1:
        then = ["DEL", "DEL"]
    if rng.random() < 0.05:
        env["CNI_COMMAND"] = rng.choice(["STATUS", "GC", "VERSION"])
        then = ["DEL"]
    return Case(number, ptype, conf, env, then, mutated, cid)


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError:
            return None


def run_launcher(rig: Rig, ptype_binary: str, env: dict[str, str], stdin: bytes, in_process: bool) -> Outcome:
    full = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_PATH": rig.bin_dir, **env}
    if in_process:
        full["PODNET_NO_AGENT"] = "1"
    t0 = time.monotonic()
    try:
        # nsenter enters the netns only (ip netns exec also remounts /sys: a few ms more a call)
        p = subprocess.run(["nsenter", f"--net=/run/netns/{rig.sandbox}", os.path.join(rig.bin_dir, ptype_binary)],
                           input=stdin, env=full, capture_output=True, timeout=CASE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return Outcome(-1, "", "timeout", CASE_TIMEOUT)
    return Outcome(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
                   time.monotonic() - t0)


def problems_of(o: Outcome, command: str) -> list[str]:
    """What is wrong with one answer, as a runtime sees it ([] when nothing)."""
    out = []
    if o.rc == -1:
        return [f"{command}: no answer within {CASE_TIMEOUT:.0f}s"]
    if o.rc not in (0, 1):
        out.append(f"{command}: exit status {o.rc}")
    if "Traceback" in o.stdout:
        out.append(f"{command}: a traceback on stdout")
    doc = o.json()
    if o.rc == 1:
        if not isinstance(doc, dict) or not isinstance(doc.get("code"), int) or not isinstance(doc.get("msg"), str):
            out.append(f"{command}: exit 1 without the CNI error JSON: {o.stdout[:200]!r}")
        elif PY_EXCEPTION.match(doc["msg"]):
            out.append(f"{command}: unvalidated input reached code: {doc['code']} {doc['msg'][:200]!r}")
    elif o.rc == 0 and command == "ADD" and not (isinstance(doc, dict) and "cniVersion" in doc):
        out.append(f"{command}: exit 0 without a result: {o.stdout[:200]!r}")
    return out


def code_of(o: Outcome) -> int | None:
    doc = o.json()
    return doc.get("code") if o.rc == 1 and isinstance(doc, dict) else None


def stdin_of(conf: dict[str, Any] | bytes, prev: Any = None) -> bytes:
    if isinstance(conf, bytes):
        return conf
    conf = dict(conf)
    if prev is not None and "prevResult" not in conf:
        conf["prevResult"] = prev
    return json.dumps(conf).encode()
