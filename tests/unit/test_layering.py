"""Layers point down, and the launcher stays on the standard library until it must run a plugin."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "podnet"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


NETLINK_MODULES = {"net/rtnl.py", "net/nlraw.py", "net/conntrack.py", "net/tc.py", "net/vfnl.py"}  # the only pyroute2 users


def test_pyroute2_only_in_the_netlink_modules():
    users = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(m.split(".")[0] == "pyroute2" for m in imports_of(p))}
    assert "net/rtnl.py" in users and users <= NETLINK_MODULES, users


# Layers, lowest first: a module may import from its own package and from lower layers only.
LAYERS: list[set[str]] = [
    {"__init__"},                         # __version__ only
    {"wire"},                             # the launcher↔agent request format and its limits
    {"cni"},                              # the CNI contract
    {"net", "ipam"},                      # the kernel; addresses and their stores
    {"dhcp"},                             # the DHCP client (uses net)
    {"plugins", "conflists"},             # one module per plugin type; the conflists podnet writes
    {"dispatch"},                         # type → plugin, exception → CNI code
    {"agent", "launcher"},                # the node agent; the per-call entry point
    {"install", "manifests"},             # launchers and lib dir on a node; the Kubernetes objects
    {"doctor", "lab", "relay"},           # checks a node; the virtual cluster; the agents' list/watch relay
    {"policy_demo"},                      # the NetworkPolicy demo
    {"demo", "kubelet_demo", "underlay_demo", "networks_demo"},
    {"cli"},                              # argument parsing only
    {"__main__"},                         # `python -m podnet`: the cli
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def unit_of(rel: str) -> str:
    parts = rel.split("/")
    return "__init__" if parts == ["__init__.py"] else parts[0].removesuffix(".py")


def podnet_imports(path: Path) -> set[str]:
    """The top-level podnet units (packages or modules) that `path` imports."""
    rel = path.relative_to(SRC).as_posix()
    pkg = rel.split("/")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)]
            mod = [*base, *(node.module.split(".") if node.module else [])]
            out |= {mod[0]} if mod else {"__init__" if a.name.startswith("__") else a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "podnet":
            out.add(node.module.split(".")[1] if "." in node.module else "__init__")
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("podnet.")}
    return out


def test_every_module_belongs_to_a_layer():
    units = {unit_of(p.relative_to(SRC).as_posix()) for p in SRC.rglob("*.py")}
    assert units <= set(LAYER), f"modules without a layer: {sorted(units - set(LAYER))}"


def test_imports_point_down():
    wrong = []
    for p in SRC.rglob("*.py"):
        mine = unit_of(p.relative_to(SRC).as_posix())
        for target in podnet_imports(p):
            if target != mine and LAYER.get(target, 99) >= LAYER[mine]:
                wrong.append(f"{p.relative_to(SRC)} ({mine}, layer {LAYER[mine]}) imports {target} "
                             f"(layer {LAYER.get(target, '?')})")
    assert not wrong, "\n".join(sorted(wrong))


def test_the_layering_rule_catches_an_upward_import(tmp_path: Path):
    """The checker itself: a plugin importing the agent is reported."""
    fake = SRC / "plugins" / "_layering_probe.py"
    fake.write_text("from ..agent import readiness\n")
    try:
        assert "agent" in podnet_imports(fake)
        assert LAYER["agent"] >= LAYER["plugins"]
    finally:
        fake.unlink()


def test_launcher_imports_only_stdlib_for_version(tmp_path: Path):
    from podnet import install
    install.write_launchers(str(tmp_path), ("bridge",), interpreter="/usr/bin/python3")
    env = {"CNI_COMMAND": "VERSION", "PATH": os.environ.get("PATH", "")}
    p = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", str(tmp_path / "podnet-bridge")],
                       input=b'{"cniVersion":"1.0.0"}', env=env, capture_output=True)
    assert p.returncode == 0, p.stderr
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines() if "|" in line}
    assert not any(m.startswith(("pyroute2", "prometheus_client", "asyncio", "ssl", "http")) for m in imported)
    assert "podnet.launcher" in imported
    assert not imported & {"os", "json", "re", "socket", "typing"}, imported & {"os", "json", "re", "socket", "typing"}


def test_launcher_forwarding_an_add_imports_nothing_heavy(tmp_path: Path):
    """The per-pod path: read env + stdin, one request to the agent, print the answer."""
    import socket
    import threading

    from podnet import install
    install.write_launchers(str(tmp_path), ("bridge",), interpreter="/usr/bin/python3")
    sock_path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(sock_path)
    srv.listen(1)
    body = b'{"cniVersion": "1.0.0"}\n'

    def answer() -> None:
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-CNI-Exit: 0\r\nX-CNI-Stderr-Length: 0\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (len(body), body))
    t = threading.Thread(target=answer)
    t.start()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/x", "CNI_IFNAME": "eth0", "PATH": "/usr/bin"}
    conf = b'{"cniVersion":"1.0.0","name":"n","type":"podnet-bridge","agentSocket":"%s"}' % sock_path.encode()
    p = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-I", "-S", str(tmp_path / "podnet-bridge")],
                       input=conf, env=env, capture_output=True, timeout=30)
    t.join(10)
    srv.close()
    assert p.returncode == 0 and p.stdout == body, p.stderr
    imported = {line.split("|")[-1].strip() for line in p.stderr.decode().splitlines() if "|" in line}
    heavy = imported & {"os", "json", "re", "socket", "typing", "pyroute2", "logging", "asyncio"}
    assert not heavy, heavy


def test_launcher_has_absolute_isolated_shebang(tmp_path: Path):
    from podnet import install
    (path,) = install.write_launchers(str(tmp_path), ("loopback",))
    first = Path(path).read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3 -IS"
    assert sys.version_info >= (3, 11)


def test_etcd_client_only_in_etcdkv():
    users = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(m.split(".")[0] in ("aetcd", "grpc") for m in imports_of(p))}
    assert users == {"ipam/etcdkv.py"}, users


def test_scapy_only_in_the_dhcp_packet_module():
    """scapy costs ~0.4 s to import: only the agent's DHCP exchange may load it."""
    users = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(m.split(".")[0] == "scapy" for m in imports_of(p))}
    assert users == {"dhcp/packets.py"}, users


def test_kubernetes_client_only_in_kubepeers_and_the_labs_api_module():
    """The agent loads lightkube only with the Kubernetes datastore; the lab only for its cluster;
    the relay for its upstream informers and token reviews."""
    users = {p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
             if any(m.split(".")[0] == "lightkube" for m in imports_of(p))}
    assert users == {"agent/kubepeers.py", "agent/kubewatch.py", "agent/policy/watch.py", "agent/kubeattach.py", "lab/kube.py",
                     "lab/heartbeat.py", "relay/main.py"}, users


def test_the_lab_pins_the_kubernetes_release_it_builds():
    from podnet.lab.control_plane import KUBERNETES_VERSION
    go_mod = (SRC.parents[1] / "scripts" / "k8s-build" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {KUBERNETES_VERSION}" in go_mod


def test_the_coredns_build_and_the_lab_pin_one_release() -> None:
    from podnet.lab.dns import COREDNS_VERSION
    script = (SRC.parent.parent / "scripts" / "coredns-build.sh").read_text()
    assert f'version="{COREDNS_VERSION}"' in script
