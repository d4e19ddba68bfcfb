"""podnet-cluster-ipam against a real etcd (Debian's etcd-server) on loopback."""
from __future__ import annotations

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from podnet.ipam.cluster import ClusterIpam, Pool
from tests.helpers.cni import run_plugin
from tests.helpers.etcd import Etcd, have_etcd

pytestmark = pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")


def ipam_conf(etcd_url: str, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "cnet", "type": "podnet-bridge",
            "ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": [etcd_url], "subnet": "10.93.0.0/24",
                     "gateway": "10.93.0.1", "blockSize": 28, "node": "n1",
                     "routes": [{"dst": "0.0.0.0/0"}], **extra}}


def call(bin_dir: str, cmd: str, conf: dict[str, Any], cid: str = "c1", agent_sock: str = "/nonexistent",
         **kw: Any) -> Any:
    conf = dict(conf, agentSocket=agent_sock)
    return run_plugin(f"{bin_dir}/podnet-cluster-ipam", cmd, conf, netns="/run/netns/unused", container_id=cid, **kw)


def test_add_is_idempotent_del_frees_gc_and_check(bin_dir: str, etcd: Etcd) -> None:
    conf = ipam_conf(etcd.url)
    a = call(bin_dir, "ADD", conf)
    assert a.rc == 0, a.stdout + a.stderr
    assert a.out["ips"] == [{"address": "10.93.0.2/24", "gateway": "10.93.0.1"}]
    assert a.out["routes"] == [{"dst": "0.0.0.0/0"}]
    again = call(bin_dir, "ADD", conf)
    assert again.out["ips"] == a.out["ips"], "a repeated ADD must return the same address"
    other = call(bin_dir, "ADD", conf, cid="c2")
    assert other.out["ips"][0]["address"] == "10.93.0.3/24"
    assert call(bin_dir, "CHECK", dict(conf, prevResult=a.out)).rc == 0
    assert call(bin_dir, "DEL", conf).rc == 0
    assert call(bin_dir, "DEL", conf).rc == 0, "DEL of an unknown handle must succeed"
    chk = call(bin_dir, "CHECK", dict(conf, prevResult=a.out))
    assert chk.rc != 0 and "c1" in chk.out["msg"]
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    assert call(bin_dir, "GC", gc).rc == 0
    from podnet.ipam.etcdkv import EtcdKV
    kv = EtcdKV([etcd.url])
    assert ClusterIpam(kv, "n1").handles() == {}
    assert ClusterIpam(kv, "n1").check() == []


def test_bad_config_names_the_field(bin_dir: str, etcd: Etcd) -> None:
    for extra, field in (({"etcdEndpoints": []}, "etcdEndpoints"), ({"subnet": "10.93.0.0/33"}, "cidr"),
                         ({"blockSize": 40}, "blockSize"), ({"etcdCAFile": "/nonexistent/ca.pem"}, "etcdCAFile"),
                         ({"gateway": "10.1.1.1"}, "gateway")):
        r = call(bin_dir, "ADD", ipam_conf(etcd.url, **extra))
        assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], (extra, r.stdout)


def test_etcd_down_is_code_11_quickly_and_nothing_half_done(bin_dir: str, etcd: Etcd) -> None:
    conf = ipam_conf(etcd.url)
    assert call(bin_dir, "ADD", conf).rc == 0
    etcd.stop()
    t0 = time.monotonic()
    r = call(bin_dir, "ADD", conf, cid="c2", timeout=60)
    took = time.monotonic() - t0
    assert r.rc != 0 and r.out["code"] == 11, r.stdout
    assert took < 30, f"ADD with etcd down took {took:.1f}s"
    st = call(bin_dir, "STATUS", dict(conf, cniVersion="1.1.0"))
    assert st.rc != 0 and st.out["code"] == 50


def test_three_nodes_sixteen_allocators_no_duplicate_no_leak(etcd: Etcd) -> None:
    """3 nodes × 16 concurrent allocators × 300 allocations, with random releases on the way."""
    from podnet.ipam.etcdkv import EtcdKV
    pool = Pool("contend", __import__("ipaddress").ip_network("10.94.0.0/16"), 26)
    kvs = [EtcdKV([etcd.url], timeout=20) for _ in range(3)]
    nodes = [ClusterIpam(kv, f"node{i}") for i, kv in enumerate(kvs)]
    nodes[0].ensure_pool(pool)
    per_worker = 300

    def worker(w: int) -> dict[str, str]:
        node = nodes[w % 3]
        rnd = random.Random(w)
        held: dict[str, str] = {}
        for j in range(per_worker):
            hid = f"net/w{w}-{j}/eth0"
            held[hid] = str(node.allocate(hid, [pool])[0])
            if rnd.random() < 0.3:
                gone = rnd.choice(list(held))
                node.release(gone)
                del held[gone]
        return held

    t0 = time.monotonic()
    with ThreadPoolExecutor(48) as ex:
        results = list(ex.map(worker, range(48)))
    elapsed = time.monotonic() - t0
    live = {hid: ip for r in results for hid, ip in r.items()}
    assert len(set(live.values())) == len(live), "an address is held by two live handles"
    # etcd's final state agrees with what the allocators believe, and with itself
    handles = nodes[0].handles()
    assert {h: rec["ips"][0] for h, rec in handles.items()} == live
    assert nodes[0].check() == []
    for hid in live:
        nodes[int(hid.split("w")[1].split("-")[0]) % 3].release(hid)
    assert nodes[0].handles() == {}
    assert all(not b.allocations for b, _ in nodes[0].blocks("contend")), "leaked allocations"
    print(f"\n{48 * per_worker} allocations in {elapsed:.1f}s = {48 * per_worker / elapsed:.0f}/s")
    for kv in kvs:
        kv.close()


def test_blocks_follow_nodes_in_etcd(etcd: Etcd) -> None:
    from podnet.ipam.etcdkv import EtcdKV
    kv = EtcdKV([etcd.url])
    pool = Pool("aff", __import__("ipaddress").ip_network("10.96.0.0/24"), 28)
    n1, n2 = ClusterIpam(kv, "n1"), ClusterIpam(kv, "n2")
    n1.ensure_pool(pool)
    a = n1.allocate("net/a/eth0", [pool])[0]
    b = n2.allocate("net/b/eth0", [pool])[0]
    owners = {str(blk.cidr): blk.node for blk, _ in n1.blocks("aff")}
    assert owners == {"10.96.0.0/28": "n1", "10.96.0.16/28": "n2"}
    assert str(a).startswith("10.96.0.") and int(str(b).split(".")[-1]) >= 16
    raw = json.loads(kv.get("/podnet/handles/net/a/eth0").value)
    assert raw == {"ips": [str(a)], "node": "n1", "pools": ["aff"]}
    kv.close()




def podnet(*argv: str) -> Any:
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "podnet.cli", *argv], capture_output=True, text=True, timeout=60)


def test_podnet_ipam_cli(bin_dir: str, etcd: Etcd) -> None:
    e = ["ipam", "--etcd", etcd.url]
    r = podnet(*e, "pool", "add", "cnet", "10.93.0.0/24", "--block-size", "28", "--gateway", "10.93.0.1")
    assert r.returncode == 0, r.stderr
    assert "10.93.0.0/24" in podnet(*e, "pool", "ls").stdout
    conf = ipam_conf(etcd.url)
    a = call(bin_dir, "ADD", conf, cid="web-1")
    assert a.rc == 0, a.stdout
    ip = a.out["ips"][0]["address"].split("/")[0]
    ls = json.loads(podnet(*e, "--json", "ls").stdout)
    assert ls == [{"pool": "cnet", "block": "10.93.0.0/28", "node": "n1", "used": 1, "size": 16, "nodeSubnet": False}]
    shown = json.loads(podnet(*e, "--json", "show", ip).stdout)
    assert list(shown) == ["cnet/web-1/eth0"]
    assert podnet(*e, "show", "web-1").returncode == 0
    assert podnet(*e, "check").returncode == 0
    assert podnet(*e, "gc", "--node", "n1", "--network", "cnet", "--keep", "web-1").stdout.count("cnet/") == 0
    assert json.loads(podnet(*e, "--json", "release", "cnet/web-1/eth0").stdout) == [ip]
    assert podnet(*e, "show", ip).returncode == 1
    assert podnet(*e, "pool", "rm", "cnet").returncode == 0
    assert podnet(*e, "pool", "ls").stdout.count("cnet") == 0


def test_node_lease_expiry_and_reclaim_with_a_short_ttl(etcd: Etcd) -> None:
    import ipaddress

    from podnet.ipam.etcdkv import EtcdKV
    kv = EtcdKV([etcd.url])
    pool = Pool("rc", ipaddress.ip_network("10.97.64.0/27"), 28)
    from podnet.ipam.registry import NodeRegistry
    dying, alive = ClusterIpam(kv, "dying"), ClusterIpam(kv, "alive")
    dying.ensure_pool(pool)
    NodeRegistry(dying).register(ttl=2)               # nobody keeps it alive
    registry = NodeRegistry(alive)
    lease = registry.register(ttl=30)
    lost = dying.allocate("net/d/eth0", [pool])
    alive.allocate("net/a/eth0", [pool])
    deadline = time.monotonic() + 15
    while "dying" not in registry.dead_nodes():
        assert time.monotonic() < deadline, "the lease never expired"
        kv.keep_alive(lease)
        time.sleep(0.5)
    assert registry.reclaim(grace=0.5) == {}
    time.sleep(0.6)
    r = podnet("ipam", "--etcd", etcd.url, "--json", "reclaim", "--grace", "0.5")
    assert json.loads(r.stdout)["reclaimed"] == {"dying": ["net/d/eth0"]}, r.stdout + r.stderr
    assert set(alive.handles()) == {"net/a/eth0"}
    assert alive.check() == []
    assert all(str(lost[0]) not in rec["ips"] for rec in alive.handles().values())
    kv.close()


def test_tls_with_client_certificates(bin_dir: str, tmp_path: Any) -> None:
    from tests.helpers.etcd import make_tls
    d = make_tls(str(tmp_path))
    e = Etcd(tls_dir=d)
    try:
        e.wait_healthy()
        tls = {"etcdCAFile": f"{d}/ca.pem", "etcdCertFile": f"{d}/client.pem", "etcdKeyFile": f"{d}/client.key"}
        a = call(bin_dir, "ADD", ipam_conf(e.url, **tls))
        assert a.rc == 0, a.stdout + a.stderr
        assert a.out["ips"][0]["address"] == "10.93.0.2/24"
        assert call(bin_dir, "DEL", ipam_conf(e.url, **tls)).rc == 0
        no_client_cert = call(bin_dir, "ADD", ipam_conf(e.url, etcdCAFile=f"{d}/ca.pem"), cid="c9", timeout=60)
        assert no_client_cert.rc != 0 and no_client_cert.out["code"] == 11, no_client_cert.stdout
        bad = call(bin_dir, "ADD", ipam_conf(e.url, etcdCAFile=f"{d}/missing.pem"))
        assert bad.rc != 0 and bad.out["code"] == 7 and "etcdCAFile" in bad.out["msg"]
    finally:
        e.remove()
