"""Whatever ADD accepts, the DEL and CHECK a runtime sends afterwards are accepted (issue 36): a
runtime puts the ADD's result back into the config as `prevResult` (libcni re-encodes it with Go's
encoder, which writes <, > and & as \\u003c…), so a config at the size limit plus its result must
still be read.  Before the fix, DEL answered code 6 "network config exceeds the limit" and the pod
could never be deleted.  Every plugin type, at the boundary, in-process and through the agent."""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from podnet.install import TYPES, launcher_name
from podnet.wire import MAX_CONFIG, MAX_RESULT, MAX_STDIN
from tests.helpers.cni import netns_add, netns_del, nsexec, unique
from tests.helpers.fuzz import CARRIER, CHAINED, NOT_IN_KERNEL, Rig, bases, one_rig, run_launcher

PAD = "x-padding"
NO_ADD_HERE = {t: "this kernel has no such link type" for t in NOT_IN_KERNEL} | {
    "dhcp": "an ADD needs a DHCP server (tests/kernel/test_dhcp.py runs one)",
    "sriov": "no SR-IOV hardware (tests/kernel/test_sriov.py runs it on a fake sysfs tree)",
    "neutron-ipam": "an ADD needs a Neutron (tests/neutron runs one)"}


def go_json(doc: Any) -> bytes:
    """What libcni writes: compact, UTF-8, and <, >, & escaped."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def plain_json(doc: Any) -> bytes:
    """What a runtime that does not escape <, > and & writes (cnitool-like clients, non-Go runtimes)."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def padded(conf: dict[str, Any], size: int, prev: Any = None) -> bytes:
    """`conf` as a runtime sends it, padded so the config — its prevResult aside — is `size` bytes."""
    doc = {**conf, PAD: ""}
    own = len(go_json(doc))
    doc[PAD] = "a" * (size - own)
    raw = go_json(doc)
    assert len(raw) == size
    if prev is None:
        return raw
    return raw[:-1] + b',"prevResult":' + go_json(prev) + b"}"


@pytest.fixture(scope="module")
def rig(bin_dir: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with one_rig(bin_dir, tmp_path_factory.mktemp("limits")) as r:
        yield r


@pytest.fixture
def pod() -> Iterator[str]:
    name = unique("pnt-lp-")
    netns_add(name)
    try:
        yield name
    finally:
        netns_del(name)


def env(command: str, pod: str, cid: str) -> dict[str, str]:
    return {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0"}


def base_conf(rig: Rig, ptype: str, socket: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "big", **bases(rig, "lpd0", 31000)[ptype], "agentSocket": socket}


@contextlib.contextmanager
def carrier(rig: Rig, ptype: str, pod: str, cid: str, in_process: bool, socket: str) -> Iterator[Any]:
    """Chained types ride on a bridge attachment, as in a conflist."""
    if ptype not in CHAINED:
        yield None
        return
    conf = {"cniVersion": "1.0.0", "name": "big", **CARRIER, "agentSocket": socket,
            "ipam": {"type": "podnet-host-local", "subnet": "10.131.0.0/16", "dataDir": rig.data_dir}}
    made = run_launcher(rig, "podnet-bridge", env("ADD", pod, cid), go_json(conf), in_process)
    assert made.rc == 0, made.stdout
    try:
        yield made.json()
    finally:
        gone = run_launcher(rig, "podnet-bridge", env("DEL", pod, cid), go_json({**conf, "prevResult": made.json()}),
                            in_process)
        assert gone.rc == 0, gone.stdout


@pytest.mark.parametrize("path", ["in-process", "agent"])
@pytest.mark.parametrize("ptype", TYPES)
def test_del_and_check_are_accepted_after_an_add_at_the_config_limit(rig: Rig, pod: str, ptype: str, path: str) -> None:
    in_process = path == "in-process"
    socket = rig.agent_socket if not in_process else rig.agent_socket + ".none"
    binary = launcher_name(ptype)
    cid = unique("lim")
    if rig.etcd_url == "" and ptype == "cluster-ipam":
        pytest.skip("etcd-server is not installed")
    if ptype == "host-device":
        nsexec(rig.sandbox, "ip", "link", "add", "lpd0", "type", "veth", "peer", "name", "lpq0")
    try:
        conf = base_conf(rig, ptype, socket)
        if ptype in NO_ADD_HERE:
            # no ADD can run here (the reason): DEL and CHECK of the largest config with the largest
            # result a runtime can send back are still read (and DEL of nothing succeeds)
            prev = {"cniVersion": "1.0.0", "ips": [{"address": "10.126.0.9/16"}],
                    "dns": {"search": ["<" * (MAX_RESULT // 6 - 100)]}}
            stdin = padded(conf, MAX_CONFIG, prev)
            assert len(stdin) > MAX_CONFIG + MAX_RESULT - 1000 and len(stdin) <= MAX_STDIN
            gone = run_launcher(rig, binary, env("DEL", pod, cid), stdin, in_process)
            if ptype == "neutron-ipam":      # read whole, then Neutron asked (nobody there): code 11, not 6
                assert gone.rc == 1 and gone.json()["code"] == 11, gone.stdout[:300]
                return
            assert gone.rc == 0, (NO_ADD_HERE[ptype], gone.stdout[:300])
            return
        with carrier(rig, ptype, pod, cid, in_process, socket) as prev:
            over = run_launcher(rig, binary, env("ADD", pod, cid), padded(conf, MAX_CONFIG + 1, prev), in_process)
            assert over.rc == 1 and over.json()["code"] == 6, f"one byte over the limit: {over.stdout[:300]}"
            made = run_launcher(rig, binary, env("ADD", pod, cid), padded(conf, MAX_CONFIG, prev), in_process)
            assert made.rc == 0, f"ADD at the limit: {made.stdout[:300]}"
            follow = padded(conf, MAX_CONFIG, made.json())
            checked = run_launcher(rig, binary, env("CHECK", pod, cid), follow, in_process)
            assert checked.rc == 0, f"CHECK after ADD: {checked.stdout[:300]}"
            gone = run_launcher(rig, binary, env("DEL", pod, cid), follow, in_process)
            assert gone.rc == 0, f"DEL after ADD: {gone.stdout[:300]}"
    finally:
        if ptype == "host-device":
            nsexec(rig.sandbox, "ip", "link", "del", "lpd0", check=False)


def static_bridge(rig: Rig, socket: str, search: list[str]) -> dict[str, Any]:
    """A bridge pod whose static IPAM gives DNS search domains: the result grows with them (Go
    writes each < as six bytes), the kernel work does not."""
    return {"cniVersion": "1.0.0", "name": "bigdns", "type": "podnet-bridge", "bridge": "lpbr0", "agentSocket": socket,
            "ipam": {"type": "podnet-static", "addresses": [{"address": "10.132.0.5/24"}], "dns": {"search": search}}}


@pytest.mark.parametrize("path", ["in-process", "agent"])
def test_a_result_too_large_to_send_back_is_refused_and_nothing_is_left(rig: Rig, pod: str, path: str) -> None:
    in_process = path == "in-process"
    socket = rig.agent_socket if not in_process else rig.agent_socket + ".none"
    cid = unique("lim")
    # a config of 0.7 MB (as a runtime that writes < plainly sends it) whose result Go writes in 4 MB
    # just under: accepted, and its DEL (the config with the Go-encoded result in it) too
    under = static_bridge(rig, socket, ["<" * (MAX_RESULT // 6 - 2000)])
    made = run_launcher(rig, "podnet-bridge", env("ADD", pod, cid), plain_json(under), in_process)
    assert made.rc == 0, made.stdout[:300]
    assert len(go_json(made.json())) > MAX_RESULT - 13000
    gone = run_launcher(rig, "podnet-bridge", env("DEL", pod, cid), go_json({**under, "prevResult": made.json()}),
                        in_process)
    assert gone.rc == 0, gone.stdout[:300]
    # over: refused with a config error that says why, and the ADD's links are undone
    over = static_bridge(rig, socket, ["<" * (MAX_RESULT // 6 + 1000)])
    refused = run_launcher(rig, "podnet-bridge", env("ADD", pod, cid), plain_json(over), in_process)
    err = refused.json()
    assert refused.rc == 1 and err["code"] == 7 and "result" in err["msg"] and "prevResult" in err["msg"], err
    in_pod = json.loads(nsexec(pod, "ip", "-j", "link", "show").stdout)
    assert [lk["ifname"] for lk in in_pod] == ["lo"], in_pod
    on_host = json.loads(nsexec(rig.sandbox, "ip", "-j", "link", "show", "type", "veth").stdout)
    assert sorted(lk["ifname"] for lk in on_host) == ["fzm0", "fzm0p"], "the pod's host veth is left"
