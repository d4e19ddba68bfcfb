"""Pod admission (dispatch/admission.py) runs the moment IPAM has given the pod its addresses,
before any of them is on the pod's interface: a process already running in the sandbox cannot
send one packet before the pod's NetworkPolicy is programmed.  A refused admission undoes the
whole ADD (no interface, no address held, code 11); a step failing after admission releases it.
In-process, in a scratch "node" netns with a pod netns, for ptp, the bridge and the one-exec plugin."""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from podnet.cni.errors import TRY_AGAIN_LATER, CNIError
from podnet.dispatch import admission, handle
from podnet.net import addr, netns, nft, policy_nft
from tests.helpers.cni import netns_add, netns_del, nsexec, unique

CID = "feedface" * 8
IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


class Recording:
    """An Admission that notes what the pod's interface had when it was called."""

    def __init__(self, pod_ns: str, refuse: bool = False) -> None:
        self.pod_ns, self.refuse = pod_ns, refuse
        self.admitted: list[tuple[str, list[str], list[str]]] = []   # (pod, ips, eth0's addresses then)
        self.released: list[tuple[str, list[str]]] = []

    def admit(self, namespace: str, name: str, container: str, ips: list[IPAddr], netns: str = "") -> None:
        shown = nsexec(self.pod_ns, "ip", "-j", "addr", "show", "dev", "eth0", check=False)
        on_eth0 = [a["local"] for lk in json.loads(shown.stdout or "[]") for a in lk.get("addr_info", [])
                   if a.get("scope") == "global"]
        self.admitted.append((f"{namespace}/{name}", [str(i) for i in ips], on_eth0))
        if self.refuse:
            raise CNIError(TRY_AGAIN_LATER, "the test refuses this pod")

    def release(self, namespace: str, name: str, container: str, ips: list[IPAddr]) -> None:
        self.released.append((f"{namespace}/{name}", [str(i) for i in ips]))


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """(the node netns, the pod netns), this thread standing in the node's."""
    host, pod = unique("pnt-adm-"), unique("pnt-admp-")
    netns_add(host)
    netns_add(pod)
    try:
        with netns.opened(f"/run/netns/{host}") as fd, netns.entered(fd):
            yield host, pod
    finally:
        admission.install(None)
        netns_del(pod)
        netns_del(host)


def conf(plugin: str, data: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    ipam = {"type": "podnet-host-local", "ranges": [[{"subnet": "10.93.0.0/24"}]],
            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data}
    main: dict[str, Any] = {"type": plugin, "ipam": ipam}
    if plugin == "podnet-bridge":
        main |= {"bridge": "pnadm0", "isGateway": True}
    if plugin == "podnet":
        main |= {"mode": "ptp"}
    return {"cniVersion": "1.1.0", "name": "admnet", **main, **(extra or {})}


def run(command: str, plugin: str, pod_ns: str, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": CID, "CNI_NETNS": f"/run/netns/{pod_ns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent",
           "CNI_ARGS": "K8S_POD_NAMESPACE=x;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=" + CID}
    out = handle(plugin.removeprefix("podnet-"), env, json.dumps(config).encode())
    return out.exit_code, json.loads(out.stdout or b"{}")


def held(data: str) -> list[str]:
    """The addresses host-local holds (its files named by address)."""
    d = Path(data, "admnet")
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


@pytest.mark.parametrize("plugin", ["podnet-ptp", "podnet-bridge", "podnet"])
def test_admission_comes_before_the_address_is_on_the_interface(node: tuple[str, str], tmp_path: Path,
                                                                plugin: str) -> None:
    _, pod = node
    rec = Recording(pod)
    admission.install(rec)
    c = conf(plugin, str(tmp_path))
    code, result = run("ADD", plugin, pod, c)
    assert code == 0, result
    ip = result["ips"][0]["address"].split("/")[0]
    assert rec.admitted == [("x/web", [ip], [])], "admitted once, with the pod's address, before eth0 had it"
    assert ip in nsexec(pod, "ip", "-4", "addr", "show", "dev", "eth0").stdout
    code, _ = run("DEL", plugin, pod, {**c, "prevResult": result})
    assert code == 0 and rec.released == [("x/web", [ip])]


@pytest.mark.parametrize("plugin", ["podnet-ptp", "podnet-bridge", "podnet"])
def test_a_refused_admission_undoes_the_add(node: tuple[str, str], tmp_path: Path, plugin: str) -> None:
    host, pod = node
    rec = Recording(pod, refuse=True)
    admission.install(rec)
    code, err = run("ADD", plugin, pod, conf(plugin, str(tmp_path)))
    assert code != 0 and err["code"] == TRY_AGAIN_LATER and "refuses" in err["msg"], err
    assert len(rec.admitted) == 1 and rec.admitted[0][2] == []
    assert "eth0" not in nsexec(pod, "ip", "link", "show").stdout, "the refused pod kept its interface"
    assert not [lk for lk in json.loads(nsexec(host, "ip", "-j", "link", "show").stdout)
                if lk["ifname"].startswith("veth")], "the refused pod's host veth stayed"
    assert held(str(tmp_path)) == [], "the refused pod's address is still held"


def test_a_step_failing_after_admission_releases_it(node: tuple[str, str], tmp_path: Path) -> None:
    """The one-exec plugin's tuning step fails (a sysctl outside the pod's net namespace) after the
    pod was admitted: the ADD is undone and the admission released."""
    _, pod = node
    rec = Recording(pod)
    admission.install(rec)
    c = conf("podnet", str(tmp_path), {"tuning": {"sysctl": {"kernel.hostname": "x"}}})
    code, err = run("ADD", "podnet", pod, c)
    assert code != 0, err
    assert len(rec.admitted) == 1
    ip = rec.admitted[0][1]
    assert rec.released == [("x/web", ip)], "the admitted pod was not released after its ADD failed"
    assert "eth0" not in nsexec(pod, "ip", "link", "show").stdout
    assert held(str(tmp_path)) == []


class Programming(Recording):
    """An Admission that writes to nftables as the policy engine does (policy_nft.apply)."""

    def admit(self, namespace: str, name: str, container: str, ips: list[IPAddr], netns: str = "") -> None:
        super().admit(namespace, name, container, ips, netns)
        policy_nft.apply(f"add table {TEST_TABLE}\nadd set {TEST_TABLE} admitted {{ type ipv4_addr; }}\n"
                         f"add element {TEST_TABLE} admitted {{ {', '.join(map(str, ips))} }}\n")


TEST_TABLE = "inet pnadmtest"


@pytest.mark.parametrize("plugin", ["podnet-ptp", "podnet-bridge", "podnet"])
def test_the_admissions_rules_are_in_the_kernel_before_the_address_is_on_the_interface(
        node: tuple[str, str], tmp_path: Path, plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-exec plugin holds its nftables writes for one transaction at the end of its ADD; the
    admission's must not wait for it (found: they did, so a pod's addresses were on its interface
    before its policy was in the kernel)."""
    host, pod = node
    admission.install(Programming(pod))
    seen: list[bool] = []
    original = addr.configure

    def configure(*a: Any, **kw: Any) -> None:
        seen.append(bool(nft.list_json(f"table {TEST_TABLE}")))
        original(*a, **kw)
    monkeypatch.setattr(addr, "configure", configure)
    try:
        code, result = run("ADD", plugin, pod, conf(plugin, str(tmp_path)))
        assert code == 0, result
        assert seen and all(seen), "the admission's rules were not in the kernel when the addresses went on eth0"
        code, _ = run("DEL", plugin, pod, {**conf(plugin, str(tmp_path)), "prevResult": result})
        assert code == 0
    finally:
        nsexec(host, "nft", "delete", "table", *TEST_TABLE.split(), check=False)
