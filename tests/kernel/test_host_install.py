"""`podnet install --lib-dir`: launchers that run on a node with the host's /usr/bin/python3
and no venv anywhere on the path — podnet and its plugin libraries copied to the lib dir."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.cni import addrs_in, run_plugin

VENV = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(sys.executable))))


def install(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--bin-dir", str(root / "opt/cni/bin"),
                           "--lib-dir", str(root / "opt/podnet"), "--conf-dir", str(root / "etc/cni/net.d"),
                           "--network", "hostnet", "--subnet", "10.79.0.0/24", *extra],
                          capture_output=True, text=True)


def test_launchers_from_the_lib_dir_run_without_the_venv(tmp_path: Path, sandbox: str, make_pod) -> None:
    r = install(tmp_path)
    assert r.returncode == 0, r.stderr
    lib = tmp_path / "opt/podnet"
    assert (lib / "podnet/launcher.py").is_file() and (lib / "pyroute2").is_dir() and (lib / "scapy").is_dir()
    launcher = (tmp_path / "opt/cni/bin/podnet-bridge").read_text()
    assert launcher.startswith("#!/usr/bin/python3 -IS") and str(lib) in launcher and VENV not in launcher
    where = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c",
                            f"import sys; sys.path[:0] = [{str(lib)!r}]; import pyroute2, podnet; "
                            "print(pyroute2.__file__); print(podnet.__file__)"],
                           capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(lib)) for line in where.stdout.split()), where.stdout

    conflist = (tmp_path / "etc/cni/net.d/10-hostnet.conflist").read_text()
    import json
    plugin = json.loads(conflist)["plugins"][0]
    conf = {"cniVersion": "1.0.0", "name": "hostnet", **plugin, "agentSocket": str(tmp_path / "no-agent.sock")}
    conf["ipam"]["dataDir"] = str(tmp_path / "ipam")
    pod = make_pod()
    add = run_plugin(str(tmp_path / "opt/cni/bin/podnet-bridge"), "ADD", conf, netns=pod, sandbox=sandbox,
                     extra_env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert add.rc == 0, add.stdout + add.stderr
    assert addrs_in(os.path.basename(pod), "eth0") == [add.out["ips"][0]["address"]]
    dele = run_plugin(str(tmp_path / "opt/cni/bin/podnet-bridge"), "DEL", conf, netns=pod, sandbox=sandbox)
    assert dele.rc == 0, dele.stdout


def test_install_refuses_a_host_python_that_is_too_old(tmp_path: Path) -> None:
    """Installing from a container into the host mounted at --host-prefix: the host's
    /usr/bin/python3 is read from its symlink."""
    host = tmp_path / "host"
    (host / "usr/bin").mkdir(parents=True)
    (host / "usr/bin/python3.9").write_text("")
    os.symlink("python3.9", host / "usr/bin/python3")
    r = subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--host-prefix", str(host),
                        "--bin-dir", "/opt/cni/bin", "--lib-dir", "/opt/podnet"], capture_output=True, text=True)
    assert r.returncode == 1 and "Python 3.9" in r.stderr and "3.11 or newer" in r.stderr, r.stderr
    assert not (host / "opt").exists(), "an install that refused still wrote files"
    os.unlink(host / "usr/bin/python3")
    (host / "usr/bin/python3.11").write_text("")
    os.symlink("python3.11", host / "usr/bin/python3")
    r = subprocess.run([sys.executable, "-m", "podnet.cli", "install", "--host-prefix", str(host),
                        "--bin-dir", "/opt/cni/bin", "--lib-dir", "/opt/podnet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    launcher = (host / "opt/cni/bin/podnet-ptp").read_text()
    assert "['/opt/podnet']" in launcher, "launchers must name the lib dir as the host sees it"
    assert (host / "opt/podnet/podnet/cli/__init__.py").is_file()
