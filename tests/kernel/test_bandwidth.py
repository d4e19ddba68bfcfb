"""podnet-bandwidth chained after podnet-bridge: a bulk TCP transfer each way measures
within ±20% of the configured rate; the ifb is listed and removed; CHECK notices damage."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cni import links_in, nsexec, run_chain
from tests.helpers.traffic import measure_bits_per_second

RATE_IN, RATE_OUT = 16_000_000, 8_000_000      # bits/s
BURST = 256_000                                # bits


def chain(tmp_path: Path, mode: dict[str, str], **bw: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "kbw", "plugins": [
        {"type": "podnet-bridge", "bridge": "pnbr6", "isGateway": True,
         "ipam": {"type": "podnet-host-local", "subnet": "10.84.0.0/24", "dataDir": str(tmp_path / "ipam"),
                  "routes": [{"dst": "0.0.0.0/0"}]}, **mode},
        {"type": "podnet-bandwidth", "capabilities": {"bandwidth": True}, **mode, **bw},
    ]}


LIMITS = {"bandwidth": {"ingressRate": RATE_IN, "ingressBurst": BURST, "egressRate": RATE_OUT, "egressBurst": BURST}}


def ifbs(sandbox: str) -> list[str]:
    return [lk["ifname"] for lk in links_in(sandbox) if lk["ifname"].startswith("bwp")]


def test_rates_hold_in_both_directions(bin_dir: str, sandbox: str, make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config=LIMITS)
    assert r.rc == 0, r.stdout + r.stderr
    names = [i["name"] for i in r.out["interfaces"]]
    assert names[-1].startswith("bwp") and ifbs(sandbox) == [names[-1]]
    # the ifb is up, with IPv6 off (it carries no IP traffic of its own): no address, no route
    assert ",UP," in nsexec(sandbox, "ip", "link", "show", "dev", names[-1]).stdout
    assert nsexec(sandbox, "cat", f"/proc/sys/net/ipv6/conf/{names[-1]}/disable_ipv6").stdout.strip() == "1"
    assert nsexec(sandbox, "ip", "-6", "addr", "show", "dev", names[-1]).stdout == ""
    assert nsexec(sandbox, "ip", "-6", "route", "show", "table", "all", "dev", names[-1]).stdout == ""
    pod_ip = r.out["ips"][0]["address"].split("/")[0]
    into_pod = measure_bits_per_second(sandbox, os.path.basename(pod), pod_ip, port=5201)
    out_of_pod = measure_bits_per_second(os.path.basename(pod), sandbox, "10.84.0.1", port=5202)
    assert 0.8 * RATE_IN <= into_pod <= 1.2 * RATE_IN, f"ingress {into_pod / 1e6:.1f} Mbit/s vs {RATE_IN / 1e6}"
    assert 0.8 * RATE_OUT <= out_of_pod <= 1.2 * RATE_OUT, f"egress {out_of_pod / 1e6:.1f} Mbit/s vs {RATE_OUT / 1e6}"
    chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, runtime_config=LIMITS, prev=r.out)
    assert chk.rc == 0, chk.stdout
    nsexec(sandbox, "ip", "link", "del", names[-1])
    chk = run_chain(bin_dir, conf, "CHECK", netns=pod, sandbox=sandbox, runtime_config=LIMITS, prev=r.out)
    assert chk.rc != 0 and "egress" in chk.out["msg"]
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, runtime_config=LIMITS, prev=r.out).rc == 0
    assert ifbs(sandbox) == []


def test_del_removes_the_ifb_and_gc_removes_strays(bin_dir: str, sandbox: str, make_pod, mode,
                                                   tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config=LIMITS)
    assert r.rc == 0, r.stdout
    assert len(ifbs(sandbox)) == 1
    from tests.helpers.cni import run_plugin
    gc = dict(conf["plugins"][1], cniVersion="1.1.0", name="kbw", **{"cni.dev/valid-attachments": []})
    assert run_plugin(f"{bin_dir}/podnet-bandwidth", "GC", gc, sandbox=sandbox).rc == 0
    assert ifbs(sandbox) == []
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox, runtime_config=LIMITS).rc == 0


@pytest.mark.parametrize("limits,field", [
    ({"ingressRate": 1000000}, "ingressBurst"),
    ({"egressBurst": 100000}, "egressRate"),
    ({"ingressRate": -5, "ingressBurst": 100}, "ingressRate"),
    ({"ingressRate": 1000000, "ingressBurst": 2 ** 36}, "ingressBurst"),
])
def test_bad_limits_are_code_7_and_apply_nothing(limits: dict[str, int], field: str, bin_dir: str, sandbox: str,
                                                 make_pod, mode, tmp_path: Path) -> None:
    conf = chain(tmp_path, mode)
    pod = make_pod()
    r = run_chain(bin_dir, conf, "ADD", netns=pod, sandbox=sandbox, runtime_config={"bandwidth": limits})
    assert r.rc != 0 and r.out["code"] == 7 and field in r.out["msg"], r.stdout
    assert ifbs(sandbox) == []
    qdisc = nsexec(sandbox, "tc", "qdisc", "show").stdout
    assert "tbf" not in qdisc
    assert run_chain(bin_dir, conf, "DEL", netns=pod, sandbox=sandbox).rc == 0
