"""Test helpers: run CNI plugin executables as a runtime would, inside a sandbox netns."""
from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from typing import Any


@dataclass
class Call:
    rc: int
    out: Any
    stdout: str
    stderr: str


def run_plugin(binary: str, command: str, conf: dict[str, Any] | bytes, *, netns: str = "",
               container_id: str = "c1", ifname: str = "eth0", sandbox: str | None = None,
               cni_path: str = "", args: str = "", extra_env: dict[str, str] | None = None,
               timeout: float = 60) -> Call:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": container_id,
           "CNI_NETNS": netns, "CNI_IFNAME": ifname, "CNI_PATH": cni_path or os.path.dirname(binary)}
    if args:
        env["CNI_ARGS"] = args
    env.update(extra_env or {})
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    argv = [binary] if sandbox is None else ["ip", "netns", "exec", sandbox, binary]
    p = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=timeout)
    text = p.stdout.decode()
    try:
        out = json.loads(text) if text.strip() else None
    except ValueError:
        out = None
    return Call(p.returncode, out, text, p.stderr.decode())


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def netns_add(name: str) -> str:
    subprocess.run(["ip", "netns", "add", name], check=True)
    return f"/run/netns/{name}"


def netns_del(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def nsexec(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=check)


def disable_ipv6(ns: str, ifname: str) -> str:
    """The link's net.ipv6.conf.<ifname>.disable_ipv6 in netns `ns` ("1": IPv6 off)."""
    return nsexec(ns, "cat", f"/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6").stdout.strip()


def links_in(ns: str) -> list[dict[str, Any]]:
    return json.loads(nsexec(ns, "ip", "-j", "link", "show").stdout)


def addrs_in(ns: str, ifname: str) -> list[str]:
    data = json.loads(nsexec(ns, "ip", "-j", "addr", "show", "dev", ifname).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a.get("scope") != "link"]


def routes_in(ns: str, family: str = "-4") -> list[dict[str, Any]]:
    return json.loads(nsexec(ns, "ip", family, "-j", "route", "show").stdout)


def inject_runtime_config(plugin: dict[str, Any], runtime_config: dict[str, Any]) -> dict[str, Any]:
    """What a runtime does: pass each capability the plugin declares as runtimeConfig."""
    caps = [k for k, v in (plugin.get("capabilities") or {}).items() if v]
    rc = {k: runtime_config[k] for k in caps if k in runtime_config}
    return dict(plugin, runtimeConfig=rc) if rc else dict(plugin)


def run_chain(bin_dir: str, conflist: dict[str, Any], command: str, *, netns: str, sandbox: str,
              container_id: str = "c1", ifname: str = "eth0", runtime_config: dict[str, Any] | None = None,
              prev: Any = None) -> Call:
    """A conflist as libcni runs it: ADD in order with prevResult; DEL in reverse; CHECK in order
    with the ADD result.  Returns the last plugin's Call (the first failure stops the chain)."""
    plugins = conflist["plugins"]
    order = list(reversed(plugins)) if command == "DEL" else plugins
    last: Call | None = None
    for p in order:
        conf = inject_runtime_config(p, runtime_config or {})
        conf.update(cniVersion=conflist["cniVersion"], name=conflist["name"])
        if prev is not None:
            conf["prevResult"] = prev
        binary = f"{bin_dir}/{p['type']}"
        last = run_plugin(binary, command, conf, netns=netns, sandbox=sandbox, container_id=container_id,
                          ifname=ifname, cni_path=bin_dir)
        if last.rc != 0:
            return last
        if command == "ADD":
            prev = last.out
    assert last is not None
    return last
