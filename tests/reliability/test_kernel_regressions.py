"""Findings of the reliability campaign (issue 15) that need the kernel: each test failed before
its fix.  Both paths (in-process and agent) through the `mode` fixture."""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers.cni import nsexec, run_plugin
from tests.helpers.state import bridge_conf, host_veths, nft_ruleset, reservations


def test_a_container_id_longer_than_an_nft_comment_still_works_and_leaves_nothing(
        bin_dir: str, sandbox: str, make_pod, mode: dict[str, str], tmp_path: Path) -> None:
    """Container IDs are not length-limited by the spec; nftables keeps 128 bytes of comment."""
    pod = make_pod()
    cid = "c" * 300
    bridge = bridge_conf(tmp_path, mode, ipMasq=True, name="klong")
    bridge["ipam"]["subnet"] = "10.88.0.0/24"
    r = run_plugin(f"{bin_dir}/podnet-bridge", "ADD", bridge, netns=pod, container_id=cid, sandbox=sandbox)
    assert r.rc == 0, r.stdout
    pm = {"cniVersion": "1.0.0", "name": "klong", "type": "podnet-portmap", "snat": True, **mode, "prevResult": r.out,
          "runtimeConfig": {"portMappings": [{"hostPort": 18090, "containerPort": 80, "protocol": "tcp"}]}}
    fw = {"cniVersion": "1.0.0", "name": "klong", "type": "podnet-firewall", **mode, "prevResult": r.out}
    for plugin, c in (("portmap", pm), ("firewall", fw)):
        a = run_plugin(f"{bin_dir}/podnet-{plugin}", "ADD", c, netns=pod, container_id=cid, sandbox=sandbox)
        assert a.rc == 0, (plugin, a.stdout)
        assert run_plugin(f"{bin_dir}/podnet-{plugin}", "CHECK", c, netns=pod, container_id=cid,
                          sandbox=sandbox).rc == 0, plugin
    assert "18090" in nft_ruleset(sandbox)
    other = run_plugin(f"{bin_dir}/podnet-portmap", "ADD", dict(pm), netns=pod, container_id="d" * 300,
                       sandbox=sandbox)
    assert other.rc == 1 and "already mapped" in other.out["msg"], "another long ID is another owner"
    for plugin, c in (("firewall", fw), ("portmap", pm)):
        assert run_plugin(f"{bin_dir}/podnet-{plugin}", "DEL", c, netns=pod, container_id=cid,
                          sandbox=sandbox).rc == 0
    assert run_plugin(f"{bin_dir}/podnet-bridge", "DEL", dict(bridge, prevResult=r.out), netns=pod,
                      container_id=cid, sandbox=sandbox).rc == 0
    ruleset = nft_ruleset(sandbox)
    pod_ip = r.out["ips"][0]["address"].split("/")[0]
    assert "18090" not in ruleset and f"{pod_ip} " not in ruleset and cid[:20] not in ruleset, ruleset
    assert host_veths(sandbox) == [] and reservations(tmp_path, "klong") == []


def test_gc_keeps_a_long_id_it_is_told_to_keep_and_removes_the_rest(
        bin_dir: str, sandbox: str, make_pod, mode: dict[str, str], tmp_path: Path) -> None:
    pods = [make_pod(), make_pod()]
    ids = ["k" * 200, "g" * 200]
    bridge = bridge_conf(tmp_path, mode, "1.1.0", ipMasq=True, name="kgc")
    for pod, cid in zip(pods, ids, strict=True):
        assert run_plugin(f"{bin_dir}/podnet-bridge", "ADD", bridge, netns=pod, container_id=cid,
                          sandbox=sandbox).rc == 0
    gc = dict(bridge, **{"cni.dev/valid-attachments": [{"containerID": ids[0], "ifname": "eth0"}]})
    assert run_plugin(f"{bin_dir}/podnet-bridge", "GC", gc, sandbox=sandbox).rc == 0
    assert len(reservations(tmp_path, "kgc")) == 1
    masq = nsexec(sandbox, "nft", "list", "table", "inet", "podnet_masq").stdout
    assert masq.count("comment") == 1, masq


def test_link_lookups_do_not_grow_the_agents_memory(sandbox: str) -> None:
    """pyroute2 0.9.7 kept one message per netlink 'get' forever (the soak's agent grew 72 MiB in
    10 000 operations).  5000 lookups through podnet's netlink wrapper may not grow RSS by 1 MiB."""
    import sys
    code = """
import ctypes, gc, sys
from podnet.net.rtnl import open_rtnl
def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096
with open_rtnl() as h:
    for _ in range(500): h.link('lo'); h.link_by_index(1)
    gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0); before = rss()
    for _ in range(2500): h.link('lo'); h.link_by_index(1)
    gc.collect(); ctypes.CDLL('libc.so.6').malloc_trim(0)
    print(rss() - before)
"""
    p = subprocess.run(["ip", "netns", "exec", sandbox, sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
    assert int(p.stdout) < 1024 * 1024, f"RSS grew {int(p.stdout) / 1024:.0f} KiB over 5000 lookups"
