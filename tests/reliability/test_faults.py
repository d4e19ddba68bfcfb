"""Faults at every step, each followed by the invariants a cluster relies on: no address held twice,
no lease or link left once the runtime has DELeted, running pods keep their traffic.

  - the agent killed (SIGKILL) during ADD, DEL and GC at random points, 100 trials
  - etcd stopped and restarted while pods come and go (cluster IPAM through the agent)
  - host-local's dataDir full (a small tmpfs) and read-only: code 11, nothing corrupted, recovery
  - the pod's netns deleted between ADD and DEL
  - GC racing ADDs of the same containers
"""
from __future__ import annotations

import ipaddress
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from podnet.net import probe
from tests.conftest import Agent
from tests.helpers.cni import Call, netns_add, netns_del, run_plugin, unique
from tests.helpers.etcd import Etcd, have_etcd
from tests.helpers.state import bridge_conf, host_veths, reservations

SEED = 1130


def addresses(calls: dict[str, Any]) -> list[str]:
    return [r["ips"][0]["address"].split("/")[0] for r in calls.values() if r]


# ------------------------------------------------------------------ the agent killed mid-operation

def test_agent_killed_at_random_points_of_add_del_and_gc(bin_dir: str, sandbox: str, tmp_path: Path) -> None:
    """100 trials: an operation starts through the agent and the agent is SIGKILLed 0–60 ms later,
    then started again.  The runtime's rules apply: a failed ADD is followed by DEL.  After every
    trial: no address held by two pods, and the leases are exactly those of pods whose ADD
    succeeded; at the end every live pod reaches its gateway, and after DEL nothing is left."""
    rng = random.Random(SEED)
    sock, log = str(tmp_path / "agent.sock"), str(tmp_path / "agent.log")
    conf = bridge_conf(tmp_path, {"agentSocket": sock}, "1.1.0", name="kfault")
    pods = [netns_add(unique("pnt-kf-")) for _ in range(8)]
    up: dict[str, Any] = {}                      # pod → its ADD result, for pods that are up
    agent = Agent(sandbox, sock, log)
    b = f"{bin_dir}/podnet-bridge"
    try:
        for trial in range(100):
            pod = rng.choice(pods)
            cid = Path(pod).name
            op = "DEL" if pod in up and rng.random() < 0.6 else ("GC" if rng.random() < 0.15 else "ADD")
            if op == "ADD" and pod in up:
                op = "DEL"
            env_conf: dict[str, Any] = dict(conf)
            if op == "DEL":
                env_conf["prevResult"] = up[pod]
            if op == "GC":
                env_conf["cni.dev/valid-attachments"] = [{"containerID": Path(p).name, "ifname": "eth0"} for p in up]
            with ThreadPoolExecutor(1) as ex:
                running = ex.submit(run_plugin, b, op, env_conf, netns=pod, container_id=cid, sandbox=sandbox)
                time.sleep(rng.uniform(0, 0.06))          # a random point of the operation, not a wait
                agent.proc.send_signal(signal.SIGKILL)
                agent.proc.wait()
                call: Call = running.result(60)
            agent = Agent(sandbox, sock, log)
            if op == "ADD":
                if call.rc == 0:
                    up[pod] = call.out
                else:                                     # a runtime DELs after a failed ADD
                    assert call.out["code"] in (11, 999) or call.rc == 0, call.stdout
                    d = run_plugin(b, "DEL", conf, netns=pod, container_id=cid, sandbox=sandbox)
                    assert d.rc == 0, d.stdout
            elif op == "DEL":
                assert call.rc == 0, f"trial {trial}: DEL must not depend on the agent: {call.stdout}"
                del up[pod]
            else:
                assert call.rc == 0, f"trial {trial}: GC failed: {call.stdout}"
            held = addresses(up)
            assert len(held) == len(set(held)), f"trial {trial}: an address is held twice: {held}"
            assert sorted(reservations(tmp_path, "kfault")) == sorted(held), \
                f"trial {trial} ({op}): leases {reservations(tmp_path, 'kfault')} != pods {held}"
        for pod in up:
            assert probe.ping(pod, "10.77.0.1"), f"{pod} lost its traffic"
        for pod in list(up):
            assert run_plugin(b, "DEL", dict(conf, prevResult=up.pop(pod)), netns=pod, container_id=Path(pod).name,
                              sandbox=sandbox).rc == 0
        assert reservations(tmp_path, "kfault") == [] and host_veths(sandbox) == []
    finally:
        agent.stop()
        for p in pods:
            netns_del(Path(p).name)


# ------------------------------------------------------------------ etcd restarted mid-churn

@pytest.mark.skipif(not have_etcd(), reason="etcd-server is not installed (apt install etcd-server)")
def test_etcd_stopped_and_restarted_while_pods_come_and_go(bin_dir: str, sandbox: str, tmp_path: Path) -> None:
    """ptp pods with the cluster IPAM, ADD and DEL in a loop through the agent; etcd is killed for
    3 s and comes back with its data.  Meanwhile ADDs fail fast with code 11 (never a hang, never
    an address); afterwards the IPAM is consistent (`podnet ipam check`), no address is held twice,
    and once every pod is DELeted no handle is left."""
    etcd = Etcd(netns=sandbox)
    sock = str(tmp_path / "agent.sock")
    agent = None
    pods = [netns_add(unique("pnt-ke-")) for _ in range(6)]
    try:
        etcd.wait_healthy()
        agent = Agent(sandbox, sock, str(tmp_path / "agent.log"))
        conf = {"cniVersion": "1.0.0", "name": "kchurn", "type": "podnet-ptp", "agentSocket": sock,
                "ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": [etcd.url], "subnet": "10.96.0.0/24",
                         "gateway": "10.96.0.1", "blockSize": 28, "node": "n1"}}
        b = f"{bin_dir}/podnet-ptp"
        up: dict[str, Any] = {}
        codes: list[int] = []
        stop = threading.Event()

        def churn() -> None:
            rng = random.Random(SEED)
            while not stop.is_set():
                pod = rng.choice(pods)
                cid = Path(pod).name
                if pod in up:
                    d = run_plugin(b, "DEL", dict(conf, prevResult=up[pod]), netns=pod, container_id=cid,
                                   sandbox=sandbox)
                    if d.rc == 0:
                        del up[pod]
                    else:
                        codes.append(d.out["code"] if d.out else -1)
                else:
                    t0 = time.monotonic()
                    a = run_plugin(b, "ADD", conf, netns=pod, container_id=cid, sandbox=sandbox)
                    assert time.monotonic() - t0 < 15, "an ADD hung while etcd was down"
                    if a.rc == 0:
                        up[pod] = a.out
                    else:
                        codes.append(a.out["code"] if a.out else -1)
                        run_plugin(b, "DEL", conf, netns=pod, container_id=cid, sandbox=sandbox)
        worker = threading.Thread(target=churn)
        worker.start()
        deadline = time.monotonic() + 30
        while len(up) < 3:
            assert time.monotonic() < deadline and worker.is_alive(), "no pod came up"
            time.sleep(0.05)
        etcd.proc.kill()
        etcd.proc.wait()
        time.sleep(3)                                             # the outage itself, not a wait for a condition
        etcd = Etcd(netns=sandbox, client_port=etcd.client_port, peer_port=etcd.peer_port, data_dir=etcd.data)
        etcd.wait_healthy()
        ups_after_restart = len(up)
        deadline = time.monotonic() + 60
        while len(codes) == 0 or len(up) == ups_after_restart:
            assert time.monotonic() < deadline and worker.is_alive(), "the churn did not resume after etcd returned"
            time.sleep(0.05)
        stop.set()
        worker.join(60)
        assert set(codes) <= {11}, f"errors other than 'try again' during the outage: {set(codes)}"
        held = addresses(up)
        assert len(held) == len(set(held))
        for pod in list(up):
            assert run_plugin(b, "DEL", dict(conf, prevResult=up.pop(pod)), netns=pod, container_id=Path(pod).name,
                              sandbox=sandbox).rc == 0
        cli = ["ip", "netns", "exec", sandbox, sys.executable, "-m", "podnet.cli", "ipam", "--etcd", etcd.url]
        check = subprocess.run([*cli, "--json", "ls"], capture_output=True, text=True)
        assert '"used": 0' in check.stdout or check.stdout.strip() in ("[]", ""), check.stdout
        chk = subprocess.run([*cli, "check"], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        assert host_veths(sandbox) == []
    finally:
        if agent is not None:
            agent.stop()
        etcd.remove()
        for p in pods:
            netns_del(Path(p).name)


# ------------------------------------------------------------------ the lease store full or read-only

@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,nr_inodes=256", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> Path:
    """Fill the filesystem holding `path` (a file as large as it goes, then tiny ones for inodes)."""
    filler = path / "filler"
    try:
        with open(filler, "wb") as f:
            while True:
                f.write(b"x" * 4096)
                f.flush()
    except OSError:
        pass
    for i in range(1000):
        try:
            (path / f"inode{i}").touch()
        except OSError:
            break
    return filler


def test_a_full_or_read_only_data_dir_is_code_11_and_recovers(bin_dir: str, sandbox: str, make_pod, small_fs: Path,
                                                             mode: dict[str, str]) -> None:
    conf = {"cniVersion": "1.0.0", "name": "kfull", "type": "podnet-host-local", **mode,
            "ipam": {"type": "podnet-host-local", "subnet": "10.93.0.0/24", "dataDir": str(small_fs / "ipam")}}
    b = f"{bin_dir}/podnet-host-local"
    pod = make_pod()
    first = run_plugin(b, "ADD", conf, netns=pod, container_id="k0", sandbox=sandbox)
    assert first.rc == 0, first.stdout
    fill(small_fs)
    full = run_plugin(b, "ADD", conf, netns=pod, container_id="k1", sandbox=sandbox)
    assert full.rc == 1 and full.out["code"] == 11, full.stdout
    assert run_plugin(b, "DEL", conf, netns=pod, container_id="k1", sandbox=sandbox).rc == 0
    leases = sorted(f for f in os.listdir(small_fs / "ipam" / "kfull") if f[0].isdigit())
    assert leases == [first.out["ips"][0]["address"].split("/")[0]], f"a half-made lease is left: {leases}"
    for f in small_fs.iterdir():
        if f.name != "ipam":
            f.unlink()
    again = run_plugin(b, "ADD", conf, netns=pod, container_id="k1", sandbox=sandbox)
    assert again.rc == 0 and again.out["ips"] != first.out["ips"], again.stdout
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    try:
        ro = run_plugin(b, "ADD", conf, netns=pod, container_id="k2", sandbox=sandbox)
        assert ro.rc == 1 and ro.out["code"] == 11, ro.stdout
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    for cid in ("k0", "k1"):
        assert run_plugin(b, "DEL", conf, netns=pod, container_id=cid, sandbox=sandbox).rc == 0
    assert [f for f in os.listdir(small_fs / "ipam" / "kfull") if f[0].isdigit()] == []
    assert run_plugin(b, "ADD", conf, netns=pod, container_id="k3", sandbox=sandbox).rc == 0


# ------------------------------------------------------------------ the netns gone before DEL

@pytest.mark.parametrize("ptype", ["bridge", "ptp"])
def test_the_pod_netns_deleted_between_add_and_del(bin_dir: str, sandbox: str, mode: dict[str, str], tmp_path: Path,
                                                   ptype: str) -> None:
    conf = bridge_conf(tmp_path, mode, name=f"kgone{ptype}")
    conf["type"] = f"podnet-{ptype}"
    ns = unique("pnt-kg-")
    pod = netns_add(ns)
    r = run_plugin(f"{bin_dir}/podnet-{ptype}", "ADD", conf, netns=pod, container_id="kg", sandbox=sandbox)
    assert r.rc == 0, r.stdout
    netns_del(ns)
    for netns in (pod, ""):                      # the path, then no path (containerd's second DEL)
        d = run_plugin(f"{bin_dir}/podnet-{ptype}", "DEL", dict(conf, prevResult=r.out), netns=netns, container_id="kg",
                       sandbox=sandbox)
        assert d.rc == 0, d.stdout
    assert reservations(tmp_path, f"kgone{ptype}") == []
    deadline = time.monotonic() + 5
    while host_veths(sandbox):                   # the kernel frees the host end with the netns
        assert time.monotonic() < deadline, host_veths(sandbox)
        time.sleep(0.05)


# ------------------------------------------------------------------ GC racing ADDs

def test_gc_racing_adds_of_the_same_containers_never_frees_a_live_pods_address(
        bin_dir: str, sandbox: str, mode: dict[str, str], tmp_path: Path) -> None:
    """A runtime never runs GC alongside ADD of a container it lists as valid; here the valid list
    always names the containers being added, so GC may only release the others."""
    conf = bridge_conf(tmp_path, mode, "1.1.0", name="kgc")
    b = f"{bin_dir}/podnet-bridge"
    names = [unique("pnt-kr-") for _ in range(12)]
    pods = [netns_add(n) for n in names]
    stale = [netns_add(unique("pnt-ks-")) for _ in range(4)]
    try:
        for i, p in enumerate(stale):
            assert run_plugin(b, "ADD", conf, netns=p, container_id=f"stale{i}", sandbox=sandbox).rc == 0
        valid = [{"containerID": n, "ifname": "eth0"} for n in names]
        gc = dict(conf, **{"cni.dev/valid-attachments": valid})
        with ThreadPoolExecutor(8) as ex:
            adds = [ex.submit(run_plugin, b, "ADD", conf, netns=p, container_id=n, sandbox=sandbox)
                    for p, n in zip(pods, names, strict=True)]
            gcs = [ex.submit(run_plugin, b, "GC", gc, sandbox=sandbox) for _ in range(4)]
            results = [f.result() for f in adds]
            assert all(g.result().rc == 0 for g in gcs)
        assert all(r.rc == 0 for r in results), [r.stdout for r in results if r.rc]
        ips = sorted(r.out["ips"][0]["address"].split("/")[0] for r in results)
        assert len(set(ips)) == 12
        assert sorted(reservations(tmp_path, "kgc")) == sorted(ips, key=ipaddress.ip_address) or \
            sorted(reservations(tmp_path, "kgc")) == sorted(ips), "GC freed a live pod's address or kept a stale one"
        for p, n in zip(pods, names, strict=True):
            assert probe.ping(p, "10.77.0.1"), n
    finally:
        for p, n in zip(pods, names, strict=True):
            run_plugin(b, "DEL", conf, netns=p, container_id=n, sandbox=sandbox)
            netns_del(n)
        for i, p in enumerate(stale):
            run_plugin(b, "DEL", conf, netns=p, container_id=f"stale{i}", sandbox=sandbox)
            netns_del(Path(p).name)
