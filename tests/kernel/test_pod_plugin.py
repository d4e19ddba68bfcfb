"""The one-exec `podnet` plugin against podnet's four-plugin chain (bridge|ptp → portmap →
bandwidth → tuning): for the same pod — same container ID, same network, a fresh IPAM store each —
the result (interfaces aside) and everything the pod and host end up with are equal: the pod's
addresses, routes, MTU and tuned sysctls; the host's routes, nftables elements, qdiscs (ifb
included) and sysctls.  Bridge and ptp, IPv4 and dual-stack, in-process and through the agent.
Then: DEL leaves nothing, CHECK notices damage, a failing step undoes the ones before it, and a
config error in a section names the field under the section."""
from __future__ import annotations

import json
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import nsexec, run_chain, run_plugin

CID = "0123456789abcdef" * 4
RUNTIME = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"},
                            {"hostPort": 18053, "containerPort": 53, "protocol": "udp"}],
           "bandwidth": {"ingressRate": 8_000_000, "ingressBurst": 800_000, "egressRate": 4_000_000,
                         "egressBurst": 400_000}}
SYSCTL = {"net.core.somaxconn": "1024", "net.ipv4.conf.IFNAME.log_martians": "1"}


def _ipam(data: str, dual: bool) -> dict[str, Any]:
    ranges = [[{"subnet": "10.88.0.0/24"}]] + ([[{"subnet": "fd88::/64"}]] if dual else [])
    routes = [{"dst": "0.0.0.0/0"}] + ([{"dst": "::/0"}] if dual else [])
    return {"type": "podnet-host-local", "ranges": ranges, "routes": routes, "dataDir": data}


def _main(kind: str) -> dict[str, Any]:
    if kind == "bridge":
        return {"bridge": "pnbr9", "isGateway": True, "ipMasq": True, "hairpinMode": True, "mtu": 1400}
    return {"ipMasq": True, "mtu": 1400}


def chain(kind: str, data: str, dual: bool, mode: dict[str, str]) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "kpod", "plugins": [
        {"type": f"podnet-{kind}", **_main(kind), "ipam": _ipam(data, dual), **mode},
        {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "snat": True, **mode},
        {"type": "podnet-bandwidth", "capabilities": {"bandwidth": True}, **mode},
        {"type": "podnet-tuning", "sysctl": SYSCTL, "dataDir": str(Path(data) / "tuning"), **mode},
    ]}


def one(kind: str, data: str, dual: bool, mode: dict[str, str]) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "kpod", "plugins": [
        {"type": "podnet", "mode": kind, **_main(kind), "ipam": _ipam(data, dual), **mode,
         "portmap": {"snat": True}, "bandwidth": {},
         "tuning": {"sysctl": SYSCTL, "dataDir": str(Path(data) / "tuning")},
         "capabilities": {"portMappings": True, "bandwidth": True}}]}


def _host_names(sandbox: str) -> dict[str, str]:
    """Host-side interface names → stable placeholders (the veth's name is random)."""
    out = {}
    for lk in json.loads(nsexec(sandbox, "ip", "-j", "link", "show").stdout):
        if lk["ifname"].startswith("veth"):
            out[lk["ifname"]] = "VETH"
    return out


def _scrub(text: str, names: dict[str, str]) -> str:
    for real, stable in names.items():
        text = text.replace(real, stable)
    text = re.sub(r'"handle": \d+', '"handle": 0', text)
    return re.sub(r'"(ifindex|link_index|index)": \d+', r'"\1": 0', text)


def state(sandbox: str, pod: str, dual: bool) -> dict[str, Any]:
    names = _host_names(sandbox)
    pod_ns = Path(pod).name
    fams = ("-4", "-6") if dual else ("-4",)
    s: dict[str, Any] = {}
    link = json.loads(nsexec(pod_ns, "ip", "-j", "-d", "link", "show", "eth0").stdout)[0]
    s["pod mtu"] = link["mtu"]
    s["pod addresses"] = sorted(f"{a['local']}/{a['prefixlen']}" for a in json.loads(
        nsexec(pod_ns, "ip", "-j", "addr", "show", "dev", "eth0").stdout)[0]["addr_info"] if a.get("scope") != "link")
    s["pod routes"] = sorted(json.dumps({k: v for k, v in r.items() if k not in ("flags",)}, sort_keys=True)
                             for f in fams for r in json.loads(nsexec(pod_ns, "ip", f, "-j", "route").stdout))
    s["pod sysctls"] = {k: nsexec(pod_ns, "sysctl", "-n", k.replace("IFNAME", "eth0")).stdout.strip() for k in SYSCTL}
    s["host routes"] = sorted(_scrub(json.dumps(r, sort_keys=True), names)
                              for f in fams for r in json.loads(nsexec(sandbox, "ip", f, "-j", "route").stdout))
    ruleset = json.loads(nsexec(sandbox, "nft", "-j", "list", "ruleset").stdout)["nftables"]
    s["nft"] = sorted(_scrub(json.dumps(o, sort_keys=True), names) for o in ruleset if "metainfo" not in o)
    s["qdiscs"] = sorted(_scrub(json.dumps({k: v for k, v in q.items() if k not in ("options",)} | {
        "options": {k: v for k, v in (q.get("options") or {}).items() if k in ("rate", "burst", "limit")}}, sort_keys=True),
        names) for q in json.loads(nsexec(sandbox, "tc", "-j", "qdisc", "show").stdout)
        if q.get("dev", "").startswith(("veth", "bwp")))
    s["host sysctls"] = {k: nsexec(sandbox, "sysctl", "-n", k).stdout.strip()
                         for k in ("net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet")}
    return s


def _without_interfaces(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k != "interfaces"}
    out["ips"] = [{k: v for k, v in ip.items() if k != "interface"} for ip in out.get("ips", [])]
    return out


@pytest.mark.parametrize("dual", [False, True], ids=["ipv4", "dual-stack"])
@pytest.mark.parametrize("kind", ["bridge", "ptp"])
def test_one_exec_equals_the_chain(kind: str, dual: bool, bin_dir: str, sandbox: str, make_pod, mode,
                                   tmp_path: Path) -> None:
    runs = {}
    for label, conf in (("chain", chain(kind, str(tmp_path / "a"), dual, mode)),
                        ("one", one(kind, str(tmp_path / "b"), dual, mode))):
        pod = make_pod()
        r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME)
        assert r.rc == 0, f"{label}: {r.stdout} {r.stderr}"
        runs[label] = (_without_interfaces(r.out), state(sandbox, pod, dual))
        chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME,
                        prev=r.out)
        assert chk.rc == 0, f"{label} CHECK: {chk.stdout}"
        d = run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME,
                      prev=r.out)
        assert d.rc == 0, f"{label} DEL: {d.stdout}"
        left = json.loads(nsexec(sandbox, "nft", "-j", "list", "ruleset").stdout)["nftables"]
        assert CID not in json.dumps(left), f"{label}: nft elements of the pod left after DEL"
        assert not [q for q in json.loads(nsexec(sandbox, "tc", "-j", "qdisc", "show").stdout)
                    if q.get("dev", "").startswith("bwp")], f"{label}: an ifb left after DEL"
    (res_chain, st_chain), (res_one, st_one) = runs["chain"], runs["one"]
    assert res_one == res_chain
    for key in st_chain:
        assert st_one[key] == st_chain[key], f"{key} differs:\n chain {st_chain[key]}\n one   {st_one[key]}"
    assert st_one["qdiscs"] and any("18080" in x for x in st_one["nft"]), "the comparison must cover shaping and DNAT"


def test_failed_step_undoes_the_others_and_errors_name_the_section(bin_dir: str, sandbox: str, make_pod, mode,
                                                                   tmp_path: Path) -> None:
    conf = one("bridge", str(tmp_path / "c"), False, mode)
    pod = make_pod()
    bad = {**RUNTIME, "bandwidth": {"ingressRate": 1_000_000}}            # no burst: bandwidth refuses
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=bad)
    assert r.rc != 0 and r.out["code"] == 7 and "bandwidth" in r.out["msg"] and "ingressBurst" in r.out["msg"], r.stdout
    assert "eth0" not in nsexec(Path(pod).name, "ip", "-o", "link").stdout, "the interface stayed"
    assert CID not in nsexec(sandbox, "nft", "list", "ruleset").stdout, "portmap's elements stayed"
    assert not list((tmp_path / "c" / "kpod").glob("10.*")), "the address stayed reserved"
    conf["plugins"][0]["tuning"] = {"sysctl": {"net.ipv4.conf.IFNAME.nonexistent_knob": "1"}}
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME)
    assert r.rc != 0 and "tuning.sysctl" in r.out["msg"], r.stdout
    assert CID not in nsexec(sandbox, "nft", "list", "ruleset").stdout and \
        not [q for q in json.loads(nsexec(sandbox, "tc", "-j", "qdisc", "show").stdout)
             if q.get("dev", "").startswith("bwp")], "a later step's failure must undo shaping and port mappings"
    conf["plugins"][0]["mode"] = "macvlan"
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME)
    assert r.rc != 0 and r.out["code"] == 7 and "mode" in r.out["msg"], r.stdout


def test_gc_and_status(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = one("bridge", str(tmp_path / "d"), False, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME)
    assert r.rc == 0, r.stdout
    plug = {**conf["plugins"][0], "cniVersion": "1.1.0", "name": "kpod"}
    assert run_plugin(f"{bin_dir}/podnet", "STATUS", plug, sandbox=sandbox).rc == 0
    gc = run_plugin(f"{bin_dir}/podnet", "GC", {**plug, "cni.dev/valid-attachments": []}, sandbox=sandbox)
    assert gc.rc == 0, gc.stdout
    assert CID not in nsexec(sandbox, "nft", "list", "ruleset").stdout, "GC left the pod's nft elements"
    assert not list((tmp_path / "d" / "kpod").glob("10.*")), "GC left the address reserved"
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME,
                     prev=r.out).rc == 0


@pytest.mark.parametrize("kind", ["bridge", "ptp"])
def test_everything_the_pod_needs_in_nftables_is_one_transaction(kind: str, bin_dir: str, sandbox: str, make_pod,
                                                                  mode, tmp_path: Path) -> None:
    """ipMasq's masquerade and portmap's hostPort mappings: one nftables generation for the ADD
    (`nft monitor` prints one "# new generation N by process P (name)" line per committed
    transaction; the test's own `nft` commands bracket the ADD)."""
    mon = subprocess.Popen(["ip", "netns", "exec", sandbox, "nft", "monitor"], stdout=subprocess.PIPE, text=True)
    try:
        assert mon.stdout is not None
        deadline = time.monotonic() + 10
        while True:                                    # the monitor is listening once it reports a canary
            nsexec(sandbox, "nft", "add", "table", "inet", "pncanary")
            nsexec(sandbox, "nft", "delete", "table", "inet", "pncanary")
            if select.select([mon.stdout], [], [], 0.2)[0]:
                break
            assert time.monotonic() < deadline, "nft monitor did not start"
        conf, pod = one(kind, str(tmp_path / "d"), False, mode), make_pod()
        r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME)
        assert r.rc == 0, r.stdout
        nsexec(sandbox, "nft", "add", "table", "inet", "pnend")          # marks the end of the ADD's events
        lines: list[str] = []
        while not any("pnend" in ln for ln in lines):
            lines.append(mon.stdout.readline())
    finally:
        mon.kill()
        mon.wait()
    nsexec(sandbox, "nft", "delete", "table", "inet", "pnend")
    start = max(i for i, ln in enumerate(lines) if "delete table inet pncanary" in ln)
    during = lines[start + 1:]
    gens = [ln for ln in during if ln.startswith("# new generation") and not ln.rstrip().endswith("(nft)")]
    assert len(gens) == 1, "".join(during)
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, container_id=CID, runtime_config=RUNTIME,
                     prev=r.out).rc == 0
    assert any("18080" in ln for ln in during) and any("pods4" in ln for ln in during), "".join(during)
