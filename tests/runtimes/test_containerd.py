"""The kubelet path: containerd (Debian's package, its CRI plugin) set up with podnet's bin and
conf dirs starts a pod sandbox through CRI — exactly the calls kubelet makes — and the pod gets
its podnet address; stopping and removing it releases everything (containerd calls DEL twice,
the second time without a netns).

containerd runs in a holder process (sandbox netns, private mount namespace; see conftest), so
its netns mounts, bridge and veths never touch the machine; the podnet agent runs there too,
and the launchers reach it as they would on a node.  The CRI client is tests/helpers/cri.py.
The sandbox ("pause") image is busybox-static, imported with ctr: there is no registry here."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from podnet.lab.kubelet import containerd_toml
from podnet.net import probe
from tests.helpers.cni import links_in
from tests.helpers.cri import RuntimeClient
from tests.helpers.images import ensure_image

PAUSE = "localhost/podnet-pause:latest"
NET = "pncri"
SUBNET = "10.201.9.0/24"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(b) for b in ("containerd", "ctr", "podman", "containerd-shim-runc-v2"))
    or not os.path.exists("/bin/busybox"),
    reason="containerd, podman (to build the image) or busybox-static not installed")


def nsenter(pid: int, *argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", *argv], capture_output=True, text=True,
                          **kw)  # type: ignore[call-overload]


def cni_dir(tmp_path: Path, bin_dir: str) -> Path:
    """podnet's launchers behind wrappers that log each call's command and CNI_NETNS; containerd
    also runs `loopback` for every pod, so podnet's loopback answers to that name."""
    d = tmp_path / "cnibin"
    d.mkdir()
    log = tmp_path / "cni-calls.log"
    for name, target in (("podnet-bridge", "podnet-bridge"), ("podnet-portmap", "podnet-portmap"),
                         ("podnet-host-local", "podnet-host-local"), ("loopback", "podnet-loopback")):
        w = d / name
        w.write_text(f'#!/bin/sh\necho "{name} $CNI_COMMAND netns=[$CNI_NETNS]" >> {log}\n'
                     f'exec {bin_dir}/{target} "$@"\n')
        w.chmod(0o755)
    return d


def containerd_config(tmp_path: Path, cni_bin: Path, conf_dir: Path) -> Path:
    cfg = tmp_path / "containerd.toml"
    cfg.write_text(containerd_toml(f"{tmp_path}/ctd-root", f"{tmp_path}/ctd-state", f"{tmp_path}/containerd.sock",
                                   str(cni_bin), str(conf_dir), PAUSE, "127.0.0.1", snapshotter="native",
                                   runc_root=f"{tmp_path}/runc"))
    return cfg


def test_a_cri_pod_sandbox_gets_its_address_and_releases_it(bin_dir: str, sandbox: str, holder: int,
                                                             tmp_path: Path) -> None:
    ensure_image(PAUSE, '["/bin/sleep","86400"]')
    image_tar = tmp_path / "pause.tar"
    subprocess.run(["podman", "save", "--format", "docker-archive", "-o", str(image_tar), PAUSE], check=True,
                   capture_output=True)
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir()
    agent_sock = tmp_path / "agent.sock"
    (conf_dir / f"10-{NET}.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NET, "plugins": [
            {"type": "podnet-bridge", "bridge": "pncri0", "isGateway": True, "ipMasq": True,
             "agentSocket": str(agent_sock),
             "ipam": {"type": "podnet-host-local", "dataDir": str(tmp_path / "ipam"),
                      "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "podnet-portmap", "capabilities": {"portMappings": True}, "agentSocket": str(agent_sock)}]}))
    cfg = containerd_config(tmp_path, cni_dir(tmp_path, bin_dir), conf_dir)
    import sys
    agent = subprocess.Popen(["nsenter", "-t", str(holder), "-m", "-n", sys.executable, "-m", "podnet.cli", "agent",
                              "--socket", str(agent_sock), "--log-file", str(tmp_path / "agent.log"),
                              "--state-dir", str(tmp_path / "state")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ctd_log = open(tmp_path / "containerd.log", "w")
    ctd = subprocess.Popen(["nsenter", "-t", str(holder), "-m", "-n", "containerd", "--config", str(cfg)],
                           stdout=ctd_log, stderr=subprocess.STDOUT)
    sock = tmp_path / "containerd.sock"
    client = None
    sid = ""
    try:
        deadline = time.monotonic() + 30
        while not (sock.exists() and agent_sock.exists()):
            assert ctd.poll() is None, (tmp_path / "containerd.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "containerd or the agent did not start"
            time.sleep(0.2)
        imp = subprocess.run(["ctr", "--address", str(sock), "-n", "k8s.io", "images", "import", str(image_tar)],
                             capture_output=True, text=True)
        assert imp.returncode == 0, imp.stderr
        client = RuntimeClient(str(sock))
        sid = client.run_pod_sandbox("web", "0f4e0f3c-3c1e-4c55-9a55-6d7d1f6b1a01", "default", str(tmp_path / "logs"),
                                     ports=((80, 18085),))
        state, ip = client.pod_sandbox_ip(sid)
        assert state == 0 and ip.startswith("10.201.9."), (state, ip)
        rules = subprocess.run(["ip", "netns", "exec", sandbox, "nft", "list", "table", "inet", "podnet_portmap"],
                               capture_output=True, text=True).stdout
        assert "tcp . 18085" in rules and f": {ip} . 80" in rules, \
            f"containerd's hostPort (sent with capitalised keys) did not become a DNAT rule: {rules}"
        assert (tmp_path / "ipam" / NET / ip).exists(), "host-local holds no lease for the sandbox's address"
        assert probe.ping(f"/run/netns/{sandbox}", ip), f"the node cannot reach its pod {ip}"

        client.stop_pod_sandbox(sid)
        client.remove_pod_sandbox(sid)
        calls = (tmp_path / "cni-calls.log").read_text().splitlines()
        dels = [c for c in calls if c.startswith("podnet-bridge DEL")]
        assert len(dels) == 2 and dels[1].endswith("netns=[]"), calls
        assert any(c.startswith("loopback ADD") for c in calls), calls
        assert not [f for f in os.listdir(tmp_path / "ipam" / NET) if f[0].isdigit()], "the lease was not released"
        rules = subprocess.run(["ip", "netns", "exec", sandbox, "nft", "list", "table", "inet", "podnet_portmap"],
                               capture_output=True, text=True).stdout
        assert "18085" not in rules, f"the hostPort rule outlived the pod: {rules}"
        assert [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("veth")] == []
    finally:
        if client is not None:
            if sid:                                   # a failed run: let containerd undo what it made
                for step in (client.stop_pod_sandbox, client.remove_pod_sandbox):
                    try:
                        step(sid)
                    except Exception:  # noqa: BLE001 - already stopped/removed
                        pass
            client.close()
        for p in (ctd, agent):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        ctd_log.close()
        nsenter(holder, "sh", "-c", f"umount -R {tmp_path}/ctd-state 2>/dev/null; "
                                    f"for m in $(grep -o '/run/netns/cni-[^ ]*' /proc/self/mounts); do umount $m; rm -f $m; done")
        subprocess.run(["pkill", "-f", f"containerd-shim-runc-v2.*{tmp_path}"], capture_output=True)
        for d in ("/run/containerd/s", "/run/containerd"):    # the shim socket dir (fixed path in 1.6), if empty
            try:
                os.rmdir(d)
            except OSError:
                pass
