"""The seeded fuzzer (tests/helpers/fuzz.py) over every plugin type's installed launcher, through
the agent and in-process, in a sandbox netns: see the helper for what each case is checked for.
`--fuzz-cases N` (per type, through the agent; a tenth of that in-process, each compared with the
agent's answer) and `--fuzz-seed S` for longer or other runs; a failure prints the case's
number, seed, config and environment so it can be replayed."""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from podnet.install import TYPES, launcher_name
from tests.helpers.cni import netns_add, netns_del, nsexec, unique
from tests.helpers.fuzz import (
    CARRIER,
    CHAINED,
    NO_SERVER,
    NOT_IN_KERNEL,
    Case,
    Rig,
    bases,
    code_of,
    make_case,
    one_rig,
    problems_of,
    run_launcher,
    stdin_of,
)

WORKERS = 2            # cases run two at a time (2 cores; much of a case is waiting on the kernel)
IN_PROCESS_EVERY = 20  # every 20th case also runs in-process (~0.35 s a launcher) and is compared


@pytest.fixture(scope="module")
def rigs(bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Rig]]:
    """A node of its own per worker (the leak checks look at the whole node)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(one_rig(bin_dir, tmp_path_factory.mktemp("fuzz"))) for _ in range(WORKERS)]


def agent_log_since(path: str, offset: int) -> str:
    with open(path, errors="replace") as f:
        f.seek(offset)
        return f.read()


def links(ns: str) -> dict[str, str]:
    """name → kind of every link in a namespace."""
    out = json.loads(subprocess.run(["ip", "-n", ns, "-d", "-j", "link", "show"], capture_output=True,
                                    text=True).stdout or "[]")
    return {lk["ifname"]: lk.get("linkinfo", {}).get("info_kind", "") for lk in out}


def leases(data_dir: str) -> list[str]:
    found = []
    for root, _, files in os.walk(data_dir):
        found += [os.path.join(root, f) for f in files if f[:1].isdigit() or ":" in f]
    return found


class Runner:
    """Runs cases for one plugin type and collects every problem (the test fails listing them)."""

    def __init__(self, rig: Rig, ptype: str, seed: int) -> None:
        self.rig, self.ptype, self.seed = rig, ptype, seed
        self.rng = random.Random(f"{seed}-{ptype}")
        self.problems: list[str] = []
        self.pod = unique("pnt-fzp-")
        netns_add(self.pod)
        self.baseline = set(links(rig.sandbox))
        self.counts = {"ok": 0, "error": 0}

    def close(self) -> None:
        netns_del(self.pod)

    def report(self, case: Case, what: list[str]) -> None:
        conf = case.conf if isinstance(case.conf, bytes) else json.dumps(case.conf)[:600]
        self.problems += [f"[{self.ptype} case {case.number} seed {self.seed}] {w}\n    env {case.env}\n    conf {conf!r}"
                          for w in what]

    def cases(self, n: int) -> list[Case]:
        """The seed's cases, all drawn before any runs (the same seed gives the same cases)."""
        out = []
        template = Rig(self.rig.bin_dir, "", "@DATA@", "@SOCK@", "@ETCD@")   # each worker fills in its own node
        for i in range(n):
            port = 20000 + self.rng.randrange(10000)
            kind = "podnet-underlay" if self.ptype == "podnet" and i % 2 else self.ptype
            base = {**bases(template, f"fzd{i % 100}", port)[kind], "agentSocket": "@SOCK@"}
            out.append(make_case(self.rng, i, self.ptype, base, f"fz{self.seed}x{i}x{self.rng.randrange(10**9)}",
                                 "@POD@"))
        return out

    def run(self, cases: list[Case], in_process_every: int) -> None:
        """Run `cases` in order in this runner's pod."""
        fill = {"@POD@": f"/run/netns/{self.pod}", "@DATA@": self.rig.data_dir,
                "@SOCK@": self.rig.agent_socket, "@ETCD@": self.rig.etcd_url or "http://127.0.0.1:9"}

        def filled(text: str) -> str:
            for k, v in fill.items():
                text = text.replace(k, v)
            return text
        for case in cases:
            case.env = {k: filled(v) for k, v in case.env.items()}
            if isinstance(case.conf, dict):
                case.conf = json.loads(filled(json.dumps(case.conf)))
            i = case.number
            device = f"fzd{i % 100}"
            if self.ptype == "host-device":
                nsexec(self.rig.sandbox, "ip", "link", "add", device, "type", "veth", "peer", "name", f"fzq{i % 100}")
            if in_process_every and i % in_process_every == 0:
                first = self.lifecycle(case, in_process=True)
                second = self.lifecycle(case, in_process=False)
                if first is not None and second is not None and (first.rc, code_of(first)) != (second.rc, code_of(second)):
                    self.report(case, [f"in-process answered {first.rc}/{code_of(first)} "
                                       f"({first.stdout[:160]!r}), the agent {second.rc}/{code_of(second)} "
                                       f"({second.stdout[:160]!r})"])
            else:
                self.lifecycle(case, in_process=False)
            if self.ptype == "host-device":
                nsexec(self.rig.sandbox, "ip", "link", "del", device, check=False)
            self.check_clean(case)

    def lifecycle(self, case: Case, in_process: bool) -> Any:
        """The case's first command, then its follow-ups (CHECK, DEL) with the ADD result; chained
        types ride on a bridge attachment made first and removed last.  Returns the first answer."""
        carrier = None
        carrier_conf = {"cniVersion": "1.0.0", "name": "fzc", **CARRIER, "agentSocket": self.rig.agent_socket,
                        "ipam": {"type": "podnet-host-local", "subnet": "10.121.0.0/16", "dataDir": self.rig.data_dir}}
        env = dict(case.env)
        carrier_env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": case.cid, "CNI_NETNS": f"/run/netns/{self.pod}",
                       "CNI_IFNAME": "eth0"}
        if self.ptype in CHAINED:
            c = run_launcher(self.rig, "podnet-bridge", carrier_env, stdin_of(carrier_conf), in_process)
            if c.rc != 0:
                self.report(case, [f"the carrier bridge ADD failed: {c.stdout[:200]}"])
                return None
            carrier = c.json()
        binary = "podnet-macvlan" if self.ptype == "dhcp" else launcher_name(self.ptype)
        first = run_launcher(self.rig, binary, env, stdin_of(case.conf, carrier), in_process)
        self.report(case, problems_of(first, env["CNI_COMMAND"]))
        self.counts["ok" if first.rc == 0 else "error"] += 1
        if not case.mutated and env["CNI_COMMAND"] == "ADD" and first.rc != 0 \
                and self.ptype not in NOT_IN_KERNEL | set(NO_SERVER):
            self.report(case, [f"the valid base config failed: {first.stdout[:300]}"])
        result = first.json() if first.rc == 0 and env["CNI_COMMAND"] == "ADD" else carrier
        for command in case.then:
            o = run_launcher(self.rig, binary, {**env, "CNI_COMMAND": command}, stdin_of(case.conf, result),
                             in_process)
            self.report(case, problems_of(o, command))
            if command == "DEL" and o.rc != 0 and first.rc == 0 and env["CNI_COMMAND"] == "ADD":
                self.report(case, [f"DEL after a successful ADD failed: {o.stdout[:300]}"])
        if carrier is not None:
            c = run_launcher(self.rig, "podnet-bridge", {**carrier_env, "CNI_COMMAND": "DEL"},
                             stdin_of({**carrier_conf, "prevResult": carrier}), in_process)
            if c.rc != 0:
                self.report(case, [f"the carrier bridge DEL failed: {c.stdout[:200]}"])
        return first

    def check_clean(self, case: Case) -> None:
        left = []
        in_pod = sorted(set(links(self.pod)) - {"lo"})
        if in_pod:
            left.append(f"links left in the pod: {in_pod}")
            netns_del(self.pod)                       # a fresh pod for the next case
            netns_add(self.pod)
        on_host = sorted(n for n, kind in links(self.rig.sandbox).items()
                         if n not in self.baseline and kind != "bridge" and not n.startswith("fzd")
                         and not n.startswith("fzq"))
        if on_host:
            left.append(f"links left on the host: {on_host}")
            for n in on_host:
                nsexec(self.rig.sandbox, "ip", "link", "del", n, check=False)
        held = leases(self.rig.data_dir)
        if held:
            left.append(f"leases left: {held}")
            for f in held:
                os.unlink(f)
        if case.cid in nsexec(self.rig.sandbox, "nft", "list", "ruleset").stdout:
            left.append("nftables rules naming the container left")
        if left:
            self.report(case, left)

    def check_store(self) -> None:
        """After every case of cluster-ipam: no handle left in etcd (read from inside the sandbox,
        where etcd listens, through its JSON gateway)."""
        code = ("import base64, json, urllib.request\n"
                "k = base64.b64encode(b'/fuzz/handles/').decode(); e = base64.b64encode(b'/fuzz/handles0').decode()\n"
                f"r = urllib.request.urlopen(urllib.request.Request('{self.rig.etcd_url}/v3/kv/range', "
                "data=json.dumps({'key': k, 'range_end': e, 'keys_only': True}).encode()), timeout=5)\n"
                "print(json.dumps([base64.b64decode(x['key']).decode() for x in json.load(r).get('kvs', [])]))")
        out = nsexec(self.rig.sandbox, "/usr/bin/python3", "-c", code).stdout
        handles = json.loads(out)
        if handles:
            self.problems.append(f"[cluster-ipam seed {self.seed}] handles left in etcd: {handles}")


@pytest.mark.parametrize("ptype", TYPES)
def test_fuzz(rigs: list[Rig], ptype: str, request: pytest.FixtureRequest) -> None:
    n = int(request.config.getoption("--fuzz-cases"))
    seed = int(request.config.getoption("--fuzz-seed"))
    if ptype == "dhcp":
        n = max(2, n // 15)                          # each ADD waits its 1 s timeout for a server
    if ptype == "cluster-ipam" and not rigs[0].etcd_url:
        pytest.skip("etcd-server is not installed")
    runners = [Runner(rig, ptype, seed) for rig in rigs]
    cases = runners[0].cases(n)
    logged_before = [os.path.getsize(rig.agent_log) for rig in rigs]
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda k: runners[k].run(cases[k::WORKERS], in_process_every=IN_PROCESS_EVERY),
                          range(WORKERS)))
        if ptype == "cluster-ipam":
            for r in runners:
                r.check_store()
    finally:
        for r in runners:
            r.close()
    problems = sorted((p for r in runners for p in r.problems), key=lambda p: int(p.split(" case ")[1].split()[0])
                      if " case " in p else -1)
    counts = {k: sum(r.counts[k] for r in runners) for k in ("ok", "error")}
    logged = [agent_log_since(rig.agent_log, at) for rig, at in zip(rigs, logged_before, strict=True)]
    for text in logged:
        # a bad request is the client's error: one line with its code and reason, never a traceback
        if "Traceback" in text:
            at = text.index("Traceback")
            problems.append(f"a traceback in the agent's log:\n{text[max(0, at - 300):at + 3000]}")
    if counts["error"]:
        assert re.search(r"refused (ADD|DEL|CHECK|GC|STATUS) \S+ container=\S* ?: code \d+: ", "".join(logged)), \
            "the agent logged no line (command, type, code, reason) for the requests it refused"
    assert not problems, f"{len(problems)} problem(s) in {n} cases ({counts}):\n" + "\n".join(problems[:40])
