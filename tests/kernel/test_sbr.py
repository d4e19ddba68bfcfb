"""podnet-sbr chained after podnet-bridge: a source rule and table per address, proven by
the kernel's own route lookup, and a TCP connection from the pod's address."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.helpers.cni import nsexec, run_chain, run_plugin
from tests.helpers.traffic import server

CLIENT_FROM = r"""
import socket, sys
s = socket.socket(); s.settimeout(2); s.bind((sys.argv[1], 0)); s.connect((sys.argv[2], int(sys.argv[3])))
print(s.recv(100).decode().strip())
"""


def chain(tmp_path: Path, mode: dict[str, str], **sbr: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "ksbr", "plugins": [
        {"type": "podnet-bridge", "bridge": "pnbr8", "isGateway": True,
         "ipam": {"type": "podnet-host-local", "subnet": "10.89.5.0/24", "dataDir": str(tmp_path / "ipam"),
                  "routes": [{"dst": "0.0.0.0/0"}]}, **mode},
        {"type": "podnet-sbr", **mode, **sbr},
    ]}


def test_source_rule_and_table(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    pns = os.path.basename(pod)
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox)
    assert r.rc == 0, r.stdout + r.stderr
    ip = r.out["ips"][0]["address"].split("/")[0]
    rules = json.loads(nsexec(pns, "ip", "-j", "rule", "show").stdout)
    mine = [x for x in rules if x.get("src") == ip]
    assert mine and mine[0]["table"] == "100", rules
    table = json.loads(nsexec(pns, "ip", "-j", "route", "show", "table", "100").stdout)
    assert any(x["dst"] == "default" and x.get("gateway") == "10.89.5.1" for x in table), table
    assert not [x for x in json.loads(nsexec(pns, "ip", "-j", "route", "show").stdout) if x.get("dev") == "eth0"]
    got = json.loads(nsexec(pns, "ip", "-j", "route", "get", "192.0.2.1", "from", ip).stdout)[0]
    assert got["gateway"] == "10.89.5.1" and got["dev"] == "eth0"
    with server(sandbox, "tcp", 7070, "node"):
        out = nsexec(pns, "/usr/bin/python3", "-c", CLIENT_FROM, ip, "10.89.5.1", "7070").stdout
    assert out.startswith("node"), out
    assert run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, prev=r.out).rc == 0
    sconf = dict(conf["plugins"][1], cniVersion="1.0.0", name="ksbr", prevResult=r.out)
    assert run_plugin(f"{bin_dir}/podnet-sbr", "DEL", sconf, netns=pod, sandbox=sandbox).rc == 0
    assert not [x for x in json.loads(nsexec(pns, "ip", "-j", "rule", "show").stdout) if x.get("src") == ip]
    chk = run_plugin(f"{bin_dir}/podnet-sbr", "CHECK", sconf, netns=pod, sandbox=sandbox)
    assert chk.rc != 0 and ip in chk.out["msg"]
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0


def test_bad_gateways_is_code_7(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode, gateways=["10.0.0.1", "10.0.0.2"])
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox)
    assert r.rc != 0 and r.out["code"] == 7 and "gateways" in r.out["msg"]
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0
