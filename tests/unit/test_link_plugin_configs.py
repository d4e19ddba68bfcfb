"""Config validation of the link plugins, before any kernel call: code 7 naming the field.

These run without root: every case fails in parse_conf, before the netns is opened, so
the CNI_NETNS below never needs to exist.
"""
from __future__ import annotations

import json
from typing import Any

import pytest

from podnet import dispatch

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/podnet-unit-none",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/nonexistent"}
IPAM = {"type": "podnet-static", "addresses": [{"address": "10.1.0.5/24"}]}


def add(ptype: str, **conf: Any) -> dict[str, Any]:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "u", "type": f"podnet-{ptype}", **conf}).encode()
    out = dispatch.handle(ptype, ENV, stdin)
    assert out.exit_code != 0
    return json.loads(out.stdout)


@pytest.mark.parametrize("ptype,conf,field", [
    ("macvlan", {"mode": "sideways", "ipam": IPAM}, "mode"),
    ("macvlan", {"mac": "not-a-mac"}, "mac"),
    ("macvlan", {"mtu": -1}, "mtu"),
    ("macvlan", {"master": "a/b"}, "master"),
    ("macvlan", {"bcqueuelen": 100}, "bcqueuelen"),
    ("ipvlan", {"mode": "l4", "ipam": IPAM}, "mode"),
    ("ipvlan", {"master": "x0"}, "ipam"),            # no IPAM and not chained
    ("vlan", {"master": "x0", "ipam": IPAM}, "vlanId"),
    ("vlan", {"master": "x0", "vlanId": 4095}, "vlanId"),
    ("vlan", {"master": "x0", "vlanId": "7"}, "vlanId"),
    ("vlan", {"vlanId": 7}, "master"),
    ("dummy", {}, "ipam"),
    ("ptp", {}, "ipam"),
    ("ptp", {"ipam": IPAM, "ipMasq": "yes"}, "ipMasq"),
    ("host-device", {}, "device"),
    ("host-device", {"hwaddr": "zz"}, "hwaddr"),
    ("host-device", {"pciBusID": "0000:zz"}, "pciBusID"),
    ("host-device", {"kernelpath": "/sys/devices/../../etc"}, "kernelpath"),
])
def test_bad_config_is_code_7_naming_the_field(ptype: str, conf: dict[str, Any], field: str) -> None:
    err = add(ptype, **conf)
    assert err["code"] == 7, err
    assert field in err["msg"], err


def test_ipvlan_chained_without_addresses_is_rejected() -> None:
    prev = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "ips": []}
    err = add("ipvlan", prevResult=prev)
    assert err["code"] == 7 and "prevResult" in err["msg"]


def test_cluster_ipam_ranges_shape_and_bad_values() -> None:
    from podnet.cni.request import from_env
    from podnet.plugins import cluster_ipam
    base = {"cniVersion": "1.0.0", "name": "u", "type": "podnet-macvlan"}
    ipam = {"type": "podnet-cluster-ipam", "etcdEndpoints": ["http://127.0.0.1:2379"], "node": "n1",
            "ranges": [[{"subnet": "10.5.0.0/16", "gateway": "10.5.0.1"}], [{"subnet": "fd05::/64"}]]}
    req = from_env(ENV, json.dumps(dict(base, ipam=ipam)).encode())
    conf = cluster_ipam.parse_conf(req)
    assert [str(p.cidr) for p in conf.pools] == ["10.5.0.0/16", "fd05::/64"]
    assert [p.block_size for p in conf.pools] == [26, 122] and str(conf.pools[0].gateway) == "10.5.0.1"
    for bad, field in (({"ranges": "x"}, "ranges"), ({"ranges": [[{"subnet": "10.5.0.0/16"}],
                                                                 [{"subnet": "10.6.0.0/16"}]]}, "pools"),
                       ({"prefix": "relative"}, "prefix"), ({"etcdEndpoints": ["nohost"]}, "etcdEndpoints")):
        stdin = json.dumps(dict(base, ipam=dict(ipam, **bad))).encode()
        err = json.loads(dispatch.handle("cluster-ipam", ENV, stdin).stdout)
        assert err["code"] == 7 and field in err["msg"], (bad, err)
