"""podnet-neutron-ipam against a real Neutron (never a mock): every pod interface a Neutron port,
the node VM's port's allowed address pairs kept right, nothing leaked on any failure."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.helpers.cni import Call, run_plugin
from tests.neutron.conftest import World, make_world

NETNS = "/run/netns/unused"        # an IPAM plugin never enters it


def call(bin_dir: str, cmd: str, conf: dict[str, Any], cid: str = "c1", ifname: str = "net1", args: str = "",
         agent_sock: str = "/nonexistent", timeout: float = 60) -> Call:
    return run_plugin(f"{bin_dir}/podnet-neutron-ipam", cmd, dict(conf, agentSocket=agent_sock), netns=NETNS,
                      container_id=cid, ifname=ifname, args=args, timeout=timeout)


def pair_ips(w: World) -> set[str]:
    return {p["ip_address"] for p in w.pairs()}


def test_add_check_del_gc_with_the_node_ports_pair(bin_dir: str, world: World) -> None:
    conf = world.conf()
    a = call(bin_dir, "ADD", conf, args="K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-1")
    assert a.rc == 0, a.stdout + a.stderr
    ip = a.out["ips"][0]["address"]
    assert ip.endswith("/24") and a.out["ips"][0]["gateway"] == "10.20.0.1"
    assert a.out["dns"] == {"nameservers": ["10.20.0.2"]}, "the subnet's nameservers when the config gives none"
    ports = world.pod_ports()
    assert len(ports) == 1
    port = ports[0]
    assert (port["device_id"], port["name"]) == ("c1", "ns1/web-1/net1")
    assert port["fixed_ips"][0]["ip_address"] == ip.split("/")[0]
    assert a.out["interfaces"][0]["mac"] == port["mac_address"], "the result carries the port's MAC (macvlan takes it)"
    assert world.pairs() == [{"ip_address": ip.split("/")[0], "mac_address": port["mac_address"]}]
    again = call(bin_dir, "ADD", conf)
    assert again.out["ips"] == a.out["ips"] and len(world.pod_ports()) == 1, "a repeated ADD returns the same port"
    assert call(bin_dir, "CHECK", dict(conf, prevResult=a.out)).rc == 0
    assert call(bin_dir, "DEL", conf).rc == 0
    assert world.pod_ports() == [] and world.pairs() == [], "DEL: the port and its pair gone"
    assert call(bin_dir, "DEL", conf).rc == 0, "DEL of what is gone succeeds"
    chk = call(bin_dir, "CHECK", dict(conf, prevResult=a.out))
    assert chk.rc != 0 and "c1" in chk.out["msg"]
    for cid in ("keep", "stale"):
        assert call(bin_dir, "ADD", conf, cid=cid).rc == 0
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "net1"}]})
    assert call(bin_dir, "GC", gc).rc == 0
    left = world.pod_ports()
    assert [p["device_id"] for p in left] == ["keep"], left
    assert pair_ips(world) == {left[0]["fixed_ips"][0]["ip_address"]}
    assert call(bin_dir, "STATUS", dict(conf, cniVersion="1.1.0")).rc == 0


def test_static_addresses_and_a_taken_one_named(bin_dir: str, world: World) -> None:
    conf = dict(world.conf(), runtimeConfig={"ips": ["10.20.0.150/24"]})
    a = call(bin_dir, "ADD", conf)
    assert a.rc == 0 and a.out["ips"][0]["address"] == "10.20.0.150/24", a.stdout
    b = call(bin_dir, "ADD", world.conf(), cid="c2", args="IP=10.20.0.151")
    assert b.rc == 0 and b.out["ips"][0]["address"] == "10.20.0.151/24", b.stdout
    taken = call(bin_dir, "ADD", world.conf(), cid="c3", args="IP=10.20.0.150")
    assert taken.rc != 0 and "10.20.0.150" in taken.out["msg"] and "already allocated" in taken.out["msg"], taken.stdout
    outside = call(bin_dir, "ADD", world.conf(), cid="c4", args="IP=10.21.0.9")
    assert outside.rc != 0 and "10.21.0.9" in outside.out["msg"]
    assert {p["device_id"] for p in world.pod_ports()} == {"c1", "c2"}, "a refused ADD leaves no port"
    assert pair_ips(world) == {"10.20.0.150", "10.20.0.151"}


def test_an_exhausted_subnet_is_code_11_naming_it(bin_dir: str, neutron: Any) -> None:
    w = make_world(neutron, "10.22.0.0/28", pools=[{"start": "10.22.0.10", "end": "10.22.0.11"}])
    for cid in ("a", "b"):
        assert call(bin_dir, "ADD", w.conf(addressPairs="none"), cid=cid).rc == 0
    r = call(bin_dir, "ADD", w.conf(addressPairs="none"), cid="c")
    assert r.rc != 0 and r.out["code"] == 11 and "10.22.0.0/28" in r.out["msg"], r.stdout
    assert len(w.pod_ports()) == 2


def test_the_eleventh_pair_in_per_ip_mode_names_the_limit_and_leaks_nothing(bin_dir: str, world: World) -> None:
    for i in range(10):
        r = call(bin_dir, "ADD", world.conf(), cid=f"p{i}")
        assert r.rc == 0, r.stdout
    assert len(world.pairs()) == 10
    r = call(bin_dir, "ADD", world.conf(), cid="p10")
    assert r.rc != 0 and "max_allowed_address_pair" in r.out["msg"] and "cidr" in r.out["msg"], r.stdout
    assert len(world.pod_ports()) == 10, "the 11th pod's port was deleted again"
    assert len(world.pairs()) == 10


def test_cidr_mode_one_pair_per_node_block(bin_dir: str, world: World) -> None:
    conf = world.conf(addressPairs="cidr", podRange="10.20.0.128/26", blockSize=28)
    ips = []
    for i in range(18):                      # 15 addresses per /28 (its first is the block's claim): 2 blocks
        r = call(bin_dir, "ADD", conf, cid=f"p{i}")
        assert r.rc == 0, r.stdout
        ips.append(r.out["ips"][0]["address"].split("/")[0])
    assert len(set(ips)) == 18 and all(ip.startswith("10.20.0.1") for ip in ips)
    assert world.pairs() == [{"ip_address": "10.20.0.128/28", "mac_address": world.pairs()[0]["mac_address"]},
                             {"ip_address": "10.20.0.144/28", "mac_address": world.pairs()[1]["mac_address"]}]
    blocks = world.pod_ports("podnet:block")
    assert sorted(b["fixed_ips"][0]["ip_address"] for b in blocks) == ["10.20.0.128", "10.20.0.144"]
    other = dict(conf, ipam=dict(conf["ipam"], node="n2", nodeAddress="10.20.0.6"))
    world.server.create("port", network_id=world.network_id, name="vm2", device_owner="compute:nova",
                        fixed_ips=[{"subnet_id": world.subnet_id, "ip_address": "10.20.0.6"}])
    r = call(bin_dir, "ADD", other, cid="n2pod")
    assert r.rc == 0 and r.out["ips"][0]["address"].startswith("10.20.0.16"), "n2 claims a block of its own"
    for i in range(18):
        assert call(bin_dir, "DEL", conf, cid=f"p{i}").rc == 0
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    assert call(bin_dir, "GC", gc).rc == 0
    assert world.pairs() == [], "GC released n1's empty blocks and their pairs"
    assert [b["name"] for b in world.pod_ports("podnet:block")] == ["podnet-block 10.20.0.160/28"]


@pytest.mark.parametrize("extra, field", [
    ({"network": ""}, "ipam.network"),
    ({"neutronUrl": ""}, "ipam.neutronUrl"),
    ({"neutronUrl": "ftp://x"}, "ipam.neutronUrl"),
    ({"password": "hunter2"}, "ipam.password"),
    ({"authUrl": "http://127.0.0.1:1/v3"}, "ipam.credentialsFile"),
    ({"addressPairs": "some"}, "ipam.addressPairs"),
    ({"addressPairs": "cidr"}, "ipam.podRange"),
    ({"addressPairs": "cidr", "podRange": "10.20.0.128/26", "blockSize": 31}, "ipam.blockSize"),
    ({"nodeAddress": "nope"}, "ipam.nodeAddress"),
    ({"pairMac": "vm"}, "ipam.pairMac"),
])
def test_bad_config_names_the_field(bin_dir: str, world: World, extra: dict[str, Any], field: str) -> None:
    r = call(bin_dir, "ADD", world.conf(**extra))
    assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], r.stdout
    assert world.pod_ports() == []


def test_neutron_hung_is_code_11_within_the_timeout_and_gc_cleans_after(bin_dir: str, world: World) -> None:
    conf = world.conf(timeout=2)
    assert call(bin_dir, "ADD", conf, cid="warm").rc == 0
    world.server.pause()
    try:
        t0 = time.monotonic()
        r = call(bin_dir, "ADD", conf, cid="during", timeout=30)
        took = time.monotonic() - t0
    finally:
        world.server.resume()
    assert r.rc != 0 and r.out["code"] == 11 and "did not answer" in r.out["msg"], r.stdout
    assert took < 15, f"ADD hung {took:.1f}s with Neutron stopped"
    world.server.wait_ready()
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "warm", "ifname": "net1"}]})
    assert call(bin_dir, "GC", gc).rc == 0
    assert [p["device_id"] for p in world.pod_ports()] == ["warm"]
    assert pair_ips(world) == {world.pod_ports()[0]["fixed_ips"][0]["ip_address"]}


def test_neutron_down_is_code_11_and_status_says_so(bin_dir: str, world: World) -> None:
    conf = world.conf(neutronUrl="http://127.0.0.1:1")
    r = call(bin_dir, "ADD", conf)
    assert r.rc != 0 and r.out["code"] == 11, r.stdout
    s = call(bin_dir, "STATUS", dict(conf, cniVersion="1.1.0"))
    assert s.rc != 0 and s.out["code"] == 50, s.stdout
    assert call(bin_dir, "DEL", conf).rc != 0, "DEL cannot know the port is gone without Neutron: the runtime retries"


def test_kill_9_at_random_points_then_gc_leaves_no_orphan(bin_dir: str, world: World) -> None:
    """50 ADDs killed at random moments (before, during and after the port create and the pair PUT),
    then one GC with no valid attachment: no pod port, no pair left."""
    rng = random.Random(31)
    conf = dict(world.conf(), agentSocket="/nonexistent")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_NETNS": NETNS, "CNI_IFNAME": "net1",
           "CNI_PATH": bin_dir}
    finished = 0
    for i in range(50):
        p = subprocess.Popen([f"{bin_dir}/podnet-neutron-ipam"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**env, "CNI_CONTAINERID": f"k{i}"})
        assert p.stdin is not None
        p.stdin.write(json.dumps(conf).encode())
        p.stdin.close()
        time.sleep(rng.uniform(0.0, 0.9))
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        else:
            finished += 1
        p.wait()
    assert world.pod_ports(), "some kills landed after the port create (else this proves nothing)"
    gc = dict(world.conf(), cniVersion="1.1.0", **{"cni.dev/valid-attachments": []})
    r = call(bin_dir, "GC", gc)
    assert r.rc == 0, r.stdout
    assert world.pod_ports() == [] and world.pairs() == [], (finished, world.pod_ports(), world.pairs())


def test_eight_concurrent_adds_on_one_node_keep_every_pair(bin_dir: str, neutron_mariadb: Any) -> None:
    """MariaDB: Neutron serves the 8 at once; the pairs are a whole-list PUT, so only If-Match and
    retry keep all 8 (without them the last writer wins and pods lose their pair)."""
    w = make_world(neutron_mariadb)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: call(bin_dir, "ADD", w.conf(), cid=f"c{i}"), range(8)))
    assert all(r.rc == 0 for r in results), [r.stdout for r in results if r.rc]
    ips = {r.out["ips"][0]["address"].split("/")[0] for r in results}
    assert len(ips) == 8
    assert pair_ips(w) == ips, "every concurrent pod's pair is on the node port"
    with ThreadPoolExecutor(8) as pool:
        dels = list(pool.map(lambda i: call(bin_dir, "DEL", w.conf(), cid=f"c{i}"), range(8)))
    assert all(r.rc == 0 for r in dels)
    assert w.pod_ports() == [] and w.pairs() == []


@pytest.fixture
def host_agent(tmp_path: Any) -> Any:
    """An agent in this (the host's) netns — where Neutron listens on loopback — with routing off:
    it only serves CNI requests (no route, table or link of the machine is touched)."""
    import sys
    sock, log = str(tmp_path / "agent.sock"), str(tmp_path / "agent.log")
    p = subprocess.Popen([sys.executable, "-m", "podnet.cli", "agent", "--socket", sock, "--log-file", log,
                          "--state-dir", str(tmp_path / "state")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert p.poll() is None and time.monotonic() < deadline, open(log).read() if os.path.exists(log) else ""
        time.sleep(0.05)
    try:
        yield sock, log
    finally:
        p.terminate()
        p.wait(10)


def test_through_the_agent_pods_take_ready_ports_from_the_pool(bin_dir: str, world: World, host_agent: Any) -> None:
    sock, log = host_agent
    conf = world.conf(poolSize=3)
    first = call(bin_dir, "ADD", conf, cid="p0", agent_sock=sock)
    assert first.rc == 0, first.stdout
    # the keeper fills the pool in the background: each ready port created, then paired (two calls
    # to Neutron; a pod takes a port only once it is paired) — until 3 are both
    deadline = time.monotonic() + 30
    while True:
        ready = {p["id"]: p for p in world.pod_ports("podnet:pool")}
        unpaired = {r["fixed_ips"][0]["ip_address"] for r in ready.values()} - {p["ip_address"] for p in world.pairs()}
        if len(ready) >= 3 and not unpaired:
            break
        assert time.monotonic() < deadline, f"ready ports are paired ahead of time: {len(ready)} ready, {unpaired} unpaired"
        time.sleep(0.2)
    second = call(bin_dir, "ADD", conf, cid="p1", agent_sock=sock, args="K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web")
    assert second.rc == 0, second.stdout
    mine = [p for p in world.pod_ports() if p["device_id"] == "p1"]
    assert len(mine) == 1 and mine[0]["id"] in ready, "the pod got a ready port, not a new one"
    assert mine[0]["name"] == "ns/web/net1" and second.out["ips"][0]["address"].startswith(
        mine[0]["fixed_ips"][0]["ip_address"])
    assert call(bin_dir, "DEL", conf, cid="p1", agent_sock=sock).rc == 0
    assert call(bin_dir, "DEL", conf, cid="p0", agent_sock=sock).rc == 0
    assert "Traceback" not in open(log).read()


class StandInKeystone:
    """A stand-in for keystone v3 (keystone itself is not run here): POST /v3/auth/tokens checks the
    credentials, answers a token in X-Subject-Token and a catalog whose `network` endpoint is the
    real Neutron; it counts the logins.  Neutron runs noauth, so it ignores the token — what this
    checks is podnet's side: one login per agent, not one per exec; the endpoint from the catalog."""

    def __init__(self, neutron_url: str, ttl: float = 3600) -> None:
        import http.server
        import threading
        outer = self
        self.logins = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                user = body["auth"]["identity"]["password"]["user"]
                if (user["name"], user["password"]) != ("podnet", "s3cret"):
                    self.send_response(401)
                    self.end_headers()
                    return
                outer.logins += 1
                expires = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(time.time() + ttl))
                doc = {"token": {"expires_at": expires, "catalog": [{"type": "network", "endpoints": [
                    {"interface": "public", "region_id": "RegionOne", "url": neutron_url}]}]}}
                raw = json.dumps(doc).encode()
                self.send_response(201)
                self.send_header("X-Subject-Token", f"tok{outer.logins}")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *a: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_keystone_token_once_per_agent_endpoint_from_the_catalog(bin_dir: str, world: World, host_agent: Any,
                                                                  tmp_path: Any) -> None:
    sock, _ = host_agent
    ks = StandInKeystone(world.server.url)
    try:
        creds = tmp_path / "creds.json"
        creds.write_text(json.dumps({"username": "podnet", "password": "s3cret", "projectName": "k8s"}))
        ipam = dict(world.ipam(), authUrl=ks.url, credentialsFile=str(creds))
        del ipam["neutronUrl"]
        conf = dict(world.conf(), ipam=ipam)
        for i in range(3):
            r = call(bin_dir, "ADD", conf, cid=f"k{i}", agent_sock=sock)
            assert r.rc == 0, r.stdout
        assert ks.logins == 1, "the agent logs in once and keeps its token"
        r = call(bin_dir, "ADD", conf, cid="k3")                  # in-process (no agent): a login of its own
        assert r.rc == 0 and ks.logins == 2
        creds.write_text(json.dumps({"username": "podnet", "password": "wrong", "projectName": "k8s"}))
        bad = call(bin_dir, "ADD", conf, cid="k4")
        assert bad.rc != 0 and "keystone" in bad.out["msg"] and "401" in bad.out["msg"], bad.stdout
        assert len(world.pod_ports()) == 4
    finally:
        ks.close()


def test_the_cli_lists_ports_and_pairs_and_collects_a_nodes_leftovers(bin_dir: str, world: World) -> None:
    import sys
    for cid in ("live", "gone"):
        assert call(bin_dir, "ADD", world.conf(), cid=cid, args=f"K8S_POD_NAMESPACE=ns;K8S_POD_NAME={cid}").rc == 0
    base = [sys.executable, "-m", "podnet.cli", "neutron"]
    common = ["--url", world.server.url, "--network", world.name, "--json"]
    ports = json.loads(subprocess.run([*base, "ports", *common], capture_output=True, text=True, check=True).stdout)
    assert sorted((p["kind"], p["node"], p["container"], p["name"]) for p in ports) == [
        ("pod", "n1", "gone", "ns/gone/net1"), ("pod", "n1", "live", "ns/live/net1")]
    pairs = json.loads(subprocess.run([*base, "pairs", *common], capture_output=True, text=True, check=True).stdout)
    assert [(p["addresses"], len(p["pairs"])) for p in pairs] == [(world.node_ip, 2)]
    gc = subprocess.run([*base, "gc", *common, "--node", "n1", "--cni-network", f"cni-{world.name}", "--keep", "live",
                         "--node-address", world.node_ip], capture_output=True, text=True)
    assert gc.returncode == 0, gc.stderr
    assert [p["name"] for p in json.loads(gc.stdout)["ports"]] == ["ns/gone/net1"]
    assert [p["device_id"] for p in world.pod_ports()] == ["live"] and len(world.pairs()) == 1
