"""podman (CNI backend) runs busybox containers on a podnet-bridge network in a sandbox netns.

podman runs the plugins in the netns it is started in, so it runs in a holder process
that sits in a sandbox netns and a private mount namespace (a fresh /sys for that
netns, the host's cgroup tree bound back in: runc needs it).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cni import links_in
from tests.helpers.images import IMAGE, ensure_image

NET = "pnpodman"
SUBNET = "10.201.7.0/24"

pytestmark = pytest.mark.skipif(shutil.which("podman") is None or not os.path.exists("/bin/busybox"),
                                reason="podman or busybox-static not installed")


def podman_env(tmp_path: Path, bin_dir: str) -> dict[str, str]:
    conf_dir = tmp_path / "net.d"
    conf_dir.mkdir(exist_ok=True)
    (conf_dir / f"50-{NET}.conflist").write_text(json.dumps({
        "cniVersion": "0.4.0", "name": NET, "plugins": [{
            "type": "podnet-bridge", "bridge": "pnpm0", "isGateway": True, "ipMasq": True, "hairpinMode": True,
            "agentSocket": str(tmp_path / "no-agent.sock"),
            "ipam": {"type": "podnet-host-local", "dataDir": str(tmp_path / "ipam"),
                     "ranges": [[{"subnet": SUBNET}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}))
    hn = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip() or 1024)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    cc = tmp_path / "containers.conf"
    cc.write_text(f"""[containers]
default_ulimits = ["nofile={min(hn, 1048576)}:{min(hn, 1048576)}", "nproc={pid_max}:{pid_max}"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin_dir}"]
network_config_dir = "{conf_dir}"
""")
    return {**os.environ, "CONTAINERS_CONF": str(cc)}


def podman(pid: int, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["nsenter", "-t", str(pid), "-m", "-n", "podman", *args], env=env, capture_output=True,
                       text=True, timeout=120)
    if check and p.returncode:
        raise AssertionError(f"podman {' '.join(args)}: {p.stdout} {p.stderr}")
    return p


def test_podman_containers_on_podnet_bridge(bin_dir: str, sandbox: str, holder: int, tmp_path: Path):
    ensure_image()
    env = podman_env(tmp_path, bin_dir)
    out = podman(holder, env, "run", "--rm", "--network", NET, IMAGE, "ip", "-4", "addr", "show", "eth0").stdout
    assert "inet 10.201.7." in out
    podman(holder, env, "run", "-d", "--name", "pn-c1", "--network", NET, IMAGE, "sleep", "300")
    try:
        ip1 = podman(holder, env, "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{NET}").IPAddress}}}}',
                     "pn-c1").stdout.strip()
        assert ip1.startswith("10.201.7.")
        ping = podman(holder, env, "run", "--rm", "--cap-add", "NET_RAW", "--network", NET, IMAGE,
                      "ping", "-c", "2", "-W", "2", ip1, check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        podman(holder, env, "rm", "-f", "-t", "0", "pn-c1", check=False)
    left = [f for f in os.listdir(tmp_path / "ipam" / NET) if f[0].isdigit()]
    assert left == []
    assert [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("veth")] == []
