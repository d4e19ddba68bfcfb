"""podnet-firewall chained after podnet-bridge: isolation proven by traffic.

Network A is `isolated`, network B `same-bridge`: pods of B talk to each other, pods of
A do not; neither reaches the other network; the node reaches both."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from podnet.net import probe
from tests.helpers.cni import nsexec, run_chain, run_plugin


def chain(tmp_path: Path, mode: dict[str, str], net: str, bridge: str, subnet: str, policy: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": net, "plugins": [
        {"type": "podnet-bridge", "bridge": bridge, "isGateway": True,
         "ipam": {"type": "podnet-host-local", "subnet": subnet, "dataDir": str(tmp_path / "ipam"),
                  "routes": [{"dst": "0.0.0.0/0"}]}, **mode},
        {"type": "podnet-firewall", "ingressPolicy": policy, **mode},
    ]}


def ip_of(call: Any) -> str:
    return str(call.out["ips"][0]["address"].split("/")[0])


def test_isolated_and_same_bridge(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    a = chain(tmp_path, mode, "kfwa", "pnbrA", "10.86.0.0/24", "isolated")
    b = chain(tmp_path, mode, "kfwb", "pnbrB", "10.87.0.0/24", "same-bridge")
    pods = {n: make_pod() for n in ("a1", "a2", "b1", "b2")}
    res = {}
    for name, pod in pods.items():
        conf = a if name.startswith("a") else b
        res[name] = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, container_id=name)
        assert res[name].rc == 0, res[name].stdout + res[name].stderr
    rules = nsexec(sandbox, "nft", "list", "ruleset").stdout
    assert all(ip_of(r) in rules for r in res.values()), "per-pod accept elements missing"

    assert probe.ping(pods["b1"], ip_of(res["b2"])), "same-bridge pods must reach each other"
    assert not probe.ping(pods["a1"], ip_of(res["a2"]), timeout=0.5, tries=2), "isolated pods reached each other"
    assert not probe.ping(pods["a1"], ip_of(res["b1"]), timeout=0.5, tries=2), "crossed from A into B"
    assert not probe.ping(pods["b1"], ip_of(res["a1"]), timeout=0.5, tries=2), "crossed from B into A"
    assert probe.ping(pods["a1"], "10.86.0.1"), "an isolated pod must still reach its gateway"
    assert probe.ping(f"/run/netns/{sandbox}", ip_of(res["a1"])), "the node must reach an isolated pod"

    chk = run_chain(bin_dir, a, "CHECK", netns=pods["a1"], sandbox=sandbox, container_id="a1", prev=res["a1"].out)
    assert chk.rc == 0, chk.stdout
    for name, pod in pods.items():
        conf = a if name.startswith("a") else b
        assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, container_id=name).rc == 0
    rules = nsexec(sandbox, "nft", "list", "ruleset").stdout
    assert not any(ip_of(r) in rules for r in res.values()), "DEL left per-pod elements"
    assert "comment" not in nsexec(sandbox, "nft", "list", "table", "bridge", "podnet_isolation").stdout


def test_open_policy_gc_and_bad_policy(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, "kfwo", "pnbrO", "10.88.5.0/24", "open")
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox)
    assert r.rc == 0, r.stdout
    gc = dict(conf["plugins"][1], cniVersion="1.1.0", name="kfwo", **{"cni.dev/valid-attachments": []})
    assert run_plugin(f"{bin_dir}/podnet-firewall", "GC", gc, sandbox=sandbox).rc == 0
    assert ip_of(r) not in nsexec(sandbox, "nft", "list", "ruleset").stdout
    chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, prev=r.out)
    assert chk.rc != 0 and ip_of(r) in chk.out["msg"]
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


@pytest.mark.parametrize("extra,field", [({"ingressPolicy": "paranoid"}, "ingressPolicy"),
                                         ({"iptablesAdminChainName": "x; flush ruleset"}, "iptablesAdminChainName")])
def test_bad_config_is_code_7(extra: dict[str, str], field: str, bin_dir: str, sandbox: str, make_pod, mode,
                              tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, "kfwx", "pnbrX", "10.88.6.0/24", "open")
    conf["plugins"][1].update(extra)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], r.stdout
    assert "podnet_firewall" not in nsexec(sandbox, "nft", "list", "tables").stdout
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0
