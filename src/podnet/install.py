"""`podnet install`: the per-type launchers in a CNI bin dir, and (--lib-dir) a copy of podnet for
the host's Python.

`podnet install --lib-dir`: a copy of podnet and the libraries its plugins import, for the
host's own interpreter — on a Kubernetes node the launchers (and the in-process fallback DEL
relies on when the agent is down) run with the host's /usr/bin/python3, not the image's venv.

Pure-Python libraries are always copied.  Compiled ones (grpcio, protobuf: the etcd client of
podnet-cluster-ipam) only work with the interpreter version they were built for, so they are
copied only when the host's Python is that version; otherwise they are left out and said so
(the cluster IPAM then works through the agent only).
"""
from __future__ import annotations

import glob
import importlib.metadata as md
import importlib.util
import os
import re
import shutil
import subprocess
import sys

INTERPRETER = "/usr/bin/python3"
TYPES = ("bridge", "host-local", "static", "loopback", "ptp", "macvlan", "ipvlan", "vlan", "host-device", "dummy",
         "portmap", "bandwidth", "tuning", "firewall", "sbr", "leg", "sriov",
         "cluster-ipam", "dhcp", "neutron-ipam", "podnet")

TEMPLATE = """#!{interpreter} -IS
# podnet launcher for the CNI plugin type {ptype!r}; written by `podnet install`.
import sys
sys.path[:0] = {paths!r}
from podnet.launcher import main
sys.exit(main({ptype!r}))
"""


def launcher_name(plugin_type: str) -> str:
    """`podnet-<type>`, and plain `podnet` for the one-exec Kubernetes plugin (type `podnet`)."""
    return plugin_type if plugin_type == "podnet" else f"podnet-{plugin_type}"


def import_paths() -> list[str]:
    """Where podnet and its dependencies live, for an interpreter started with -I -S."""
    import podnet
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(podnet.__file__)))]
    for dep in ("pyroute2", "prometheus_client", "aetcd"):
        spec = importlib.util.find_spec(dep)  # locate without importing
        if spec is not None and spec.origin:
            paths.append(os.path.dirname(os.path.dirname(os.path.abspath(spec.origin))))
    return list(dict.fromkeys(paths))


def write_launchers(bin_dir: str, types: tuple[str, ...] = TYPES, interpreter: str = INTERPRETER,
                    paths: list[str] | None = None) -> list[str]:
    os.makedirs(bin_dir, exist_ok=True)
    written = []
    for t in types:
        dest = os.path.join(bin_dir, launcher_name(t))
        tmp = dest + ".tmp"
        with open(tmp, "w") as f:
            f.write(TEMPLATE.format(interpreter=interpreter, ptype=t, paths=paths or import_paths()))
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
        written.append(dest)
    return written


def write_loopback_if_missing(bin_dir: str, interpreter: str = INTERPRETER, paths: list[str] | None = None) -> str:
    """containerd and CRI-O run a plugin named plain `loopback` for every pod, whatever the
    conflist says; a node without the reference plugins has none and no pod could start.  Then
    podnet's loopback goes there under that name; one already there (the reference plugin) is
    kept.  Returns the path written, or "" when one was there."""
    dest = os.path.join(bin_dir, "loopback")
    if os.path.lexists(dest):
        return ""
    tmp = dest + ".tmp"
    with open(tmp, "w") as f:
        f.write(TEMPLATE.format(interpreter=interpreter, ptype="loopback", paths=paths or import_paths()))
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    return dest


# ------------------------------------------------------------ --lib-dir: podnet for the host's Python
MIN_PYTHON = (3, 11)      # tested on Debian 12's 3.11; the code needs 3.10 language features at least
PLUGIN_DEPS = ("pyroute2", "prometheus_client", "scapy", "aetcd", "grpcio", "protobuf")


class HostPythonTooOld(Exception):
    pass


def host_python(interpreter: str, host_prefix: str = "") -> tuple[int, int]:
    """The version of the host's interpreter: run it, or (installing from a container into a
    host mounted at host_prefix) read it from its name, following symlinks within the prefix."""
    if not host_prefix:
        out = subprocess.run([interpreter, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=10)
        if out.returncode:
            raise FileNotFoundError(f"{interpreter} does not run: {out.stderr.strip()}")
        major, minor = out.stdout.strip().split(".")
        return int(major), int(minor)
    path = interpreter
    for _ in range(10):
        m = re.search(r"python(\d+)\.(\d+)$", path)
        if m:
            return int(m.group(1)), int(m.group(2))
        full = host_prefix + path
        if not os.path.islink(full):
            break
        target = os.readlink(full)
        path = target if target.startswith("/") else os.path.join(os.path.dirname(path), target)
    found = sorted(glob.glob(f"{host_prefix}/usr/lib/python3.*/os.py"))
    if not found:
        raise FileNotFoundError(f"no Python found at {host_prefix}{interpreter}")
    m = re.search(r"python(\d+)\.(\d+)/os.py$", found[-1])
    assert m
    return int(m.group(1)), int(m.group(2))


def require(version: tuple[int, int], interpreter: str) -> None:
    if version < MIN_PYTHON:
        raise HostPythonTooOld(f"{interpreter} is Python {version[0]}.{version[1]}; podnet's launchers need "
                               f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")


def _copy_tree(src: str, dest: str) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def copy_lib(lib_dir: str, host_version: tuple[int, int]) -> tuple[list[str], list[str]]:
    """Copy podnet and PLUGIN_DEPS into lib_dir; (copied, left out with the reason)."""
    import podnet
    os.makedirs(lib_dir, exist_ok=True)
    _copy_tree(os.path.dirname(os.path.abspath(podnet.__file__)), os.path.join(lib_dir, "podnet"))
    copied, skipped = ["podnet"], []
    for name in PLUGIN_DEPS:
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            skipped.append(f"{name}: not installed")
            continue
        files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in str(f)]
        if any(str(f).endswith(".so") for f in files) and host_version != sys.version_info[:2]:
            skipped.append(f"{name}: compiled for Python {sys.version_info[0]}.{sys.version_info[1]}, "
                           f"the host has {host_version[0]}.{host_version[1]}")
            continue
        for f in files:
            dest = os.path.join(lib_dir, str(f))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy2(str(dist.locate_file(f)), dest)
        copied.append(f"{name} {dist.version}")
    return copied, skipped
