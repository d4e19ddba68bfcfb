"""podnet-tuning chained after podnet-bridge: values visible in the pod, restored by DEL."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import links_in, nsexec, run_chain, run_plugin


def chain(tmp_path: Path, mode: dict[str, str], **tuning: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "ktu", "plugins": [
        {"type": "podnet-bridge", "bridge": "pnbr7", "isGateway": True,
         "ipam": {"type": "podnet-host-local", "subnet": "10.85.0.0/24", "dataDir": str(tmp_path / "ipam")}, **mode},
        {"type": "podnet-tuning", "dataDir": str(tmp_path / "tuning"), **mode, **tuning},
    ]}


def link(pod: str) -> dict[str, Any]:
    return next(lk for lk in links_in(os.path.basename(pod)) if lk["ifname"] == "eth0")


def sysctl(pod: str, key: str) -> str:
    return nsexec(os.path.basename(pod), "sysctl", "-n", key).stdout.strip()


def test_values_applied_then_restored(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, mac="02:aa:bb:cc:dd:ee", mtu=1280, promisc=True, allmulti=True, txQLen=321,
                 sysctl={"net.ipv4.conf.IFNAME.arp_filter": "1", "net.core.somaxconn": "1234"})
    pod = make_pod()
    bridge_only = dict(conf, plugins=conf["plugins"][:1])
    b = run_chain(bin_dir, bridge_only, "ADD", netns=pod, sandbox=sandbox)
    assert b.rc == 0, b.stdout
    before = link(pod)
    before_somaxconn = sysctl(pod, "net.core.somaxconn")
    tconf = dict(conf["plugins"][1], cniVersion="1.0.0", name="ktu", prevResult=b.out)
    r = run_plugin(f"{bin_dir}/podnet-tuning", "ADD", tconf, netns=pod, sandbox=sandbox)
    assert r.rc == 0, r.stdout + r.stderr
    now = link(pod)
    assert now["address"] == "02:aa:bb:cc:dd:ee" and now["mtu"] == 1280 and now["txqlen"] == 321
    assert "PROMISC" in now["flags"] and "ALLMULTI" in now["flags"]
    assert sysctl(pod, "net.ipv4.conf.eth0.arp_filter") == "1" and sysctl(pod, "net.core.somaxconn") == "1234"
    eth0 = next(i for i in r.out["interfaces"] if i["name"] == "eth0")
    assert eth0["mac"] == "02:aa:bb:cc:dd:ee", "the result must carry the new MAC"
    assert run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, prev=r.out).rc == 0
    nsexec(os.path.basename(pod), "ip", "link", "set", "eth0", "mtu", "1400")
    chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, prev=r.out)
    assert chk.rc != 0 and "mtu" in chk.out["msg"]
    assert run_plugin(f"{bin_dir}/podnet-tuning", "DEL", tconf, netns=pod, sandbox=sandbox).rc == 0
    after = link(pod)
    assert after["address"] == before["address"] and after["mtu"] == before["mtu"]
    assert "PROMISC" not in after["flags"] and after["txqlen"] == before["txqlen"]
    assert sysctl(pod, "net.core.somaxconn") == before_somaxconn
    assert not list((tmp_path / "tuning").rglob("*.json"))
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


@pytest.mark.parametrize("tuning,field", [
    ({"sysctl": {"kernel.panic": "1"}}, "net/"),
    ({"sysctl": {"net/../kernel/panic": "1"}}, "sysctl"),
    ({"sysctl": {"net.ipv4.ip_forward": True}}, "sysctl"),
    ({"mtu": "big"}, "mtu"),
    ({"mac": "nope"}, "mac"),
    ({"promisc": "yes"}, "promisc"),
])
def test_bad_tuning_is_code_7(tuning: dict[str, Any], field: str, bin_dir: str, sandbox: str, make_pod, mode,
                              tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, **tuning)
    pod = make_pod()
    before = link_or_none(pod)
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], r.stdout
    assert before is None
    assert not list((tmp_path / "tuning").rglob("*.json"))
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


def link_or_none(pod: str) -> dict[str, Any] | None:
    return next((lk for lk in links_in(os.path.basename(pod)) if lk["ifname"] == "eth0"), None)
