"""Findings of the reliability campaign (issue 15) that need no kernel: each test failed before
its fix."""
from __future__ import annotations

import json
from typing import Any

import pytest

from podnet.cni.errors import CNIError
from podnet.cni.request import Request, from_env
from podnet.cni.skel import run
from podnet.plugins import REGISTRY, cluster_ipam, static

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin"}


def request(conf: dict[str, Any], **env: str) -> Request:
    return from_env({**ENV, **env}, json.dumps(conf).encode())


def cluster_conf(**ipam: Any) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": "n", "type": "podnet-cluster-ipam",
            "ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": ["http://127.0.0.1:1"], **ipam}}


def test_a_small_subnet_without_block_size_is_one_block() -> None:
    conf = cluster_ipam.parse_conf(request(cluster_conf(ranges=[[{"subnet": "10.81.0.0/29"}]])))
    assert [(str(p.cidr), p.block_size) for p in conf.pools] == [("10.81.0.0/29", 29)]
    conf = cluster_ipam.parse_conf(request(cluster_conf(subnet="10.81.0.0/16")))
    assert conf.pools[0].block_size == 26, "the default block size stays /26 where it fits"


@pytest.mark.parametrize("ipam", [
    {"ranges": [[{"subnet": "10.81.0.0/29"}]], "blockSize": 26},
    {"subnet": "10.81.0.0/29", "blockSize": 26},
])
def test_a_bad_block_size_is_named_where_it_is_written(ipam: dict[str, Any]) -> None:
    with pytest.raises(CNIError) as e:
        cluster_ipam.parse_conf(request(cluster_conf(**ipam)))
    assert e.value.code == 7 and "ipam.blockSize" in e.value.msg and "ranges[0][0].blockSize" not in e.value.msg


@pytest.mark.parametrize("bad", [{"cidr": 5}, {"cidr": "10.0.0.0/24", "gateway": 7},
                                 {"cidr": "10.0.0.0/24", "exclude": 3}, {"cidr": "10.0.0.0/24", "exclude": [1]}])
def test_non_string_addresses_in_a_pool_are_config_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(CNIError) as e:
        cluster_ipam.parse_conf(request(cluster_conf(pool=bad)))
    assert e.value.code == 7 and "ipam.pool" in e.value.msg


def test_static_refuses_a_gateway_of_the_other_family() -> None:
    conf = {"cniVersion": "1.0.0", "name": "n", "type": "podnet-static",
            "ipam": {"type": "podnet-static", "addresses": [{"address": "10.1.2.5/24", "gateway": "fd00:1::1"}]}}
    with pytest.raises(CNIError) as e:
        static.addresses(request(conf))
    assert e.value.code == 7 and "ipam.addresses[0].gateway" in e.value.msg


@pytest.mark.parametrize("depth", [990, 5000])
@pytest.mark.parametrize("ptype", sorted(REGISTRY))
def test_deeply_nested_json_is_code_6_with_an_error_json(ptype: str, depth: int) -> None:
    stdin = b'{"cniVersion":"1.0.0","name":"x","deep":' + b"[" * depth + b"]" * depth + b"}"
    out = run(REGISTRY[ptype], ENV, stdin)
    assert out.exit_code == 1 and json.loads(out.stdout)["code"] == 6, out


@pytest.mark.parametrize("ifname", ["eth%d", "%s", "e%"])
def test_an_ifname_the_kernel_would_rewrite_is_refused_before_anything_is_made(ifname: str) -> None:
    out = run(REGISTRY["ptp"], {**ENV, "CNI_IFNAME": ifname},
              b'{"cniVersion":"1.0.0","name":"n","type":"podnet-ptp","ipam":{}}')
    err = json.loads(out.stdout)
    assert out.exit_code == 1 and err["code"] == 4 and "CNI_IFNAME" in err["msg"], err


def test_an_oversized_config_is_refused_with_code_6() -> None:
    stdin = b'{"cniVersion":"1.0.0","name":"x","pad":"' + b"a" * (4 * 1024 * 1024) + b'"}'
    out = run(REGISTRY["bridge"], ENV, stdin)
    assert out.exit_code == 1 and json.loads(out.stdout)["code"] == 6


@pytest.mark.parametrize("ptype, conf", [
    ("host-local", {"ipam": {"type": "podnet-host-local", "subnet": "10.9.0.0/24", "dataDir": "x\u0000y"}}),
    ("host-local", {"ipam": {"type": "podnet-host-local", "subnet": "10.9.0.0/24", "dataDir": "relative/dir"}}),
    ("tuning", {"dataDir": "/var/lib/\u0000cni", "prevResult": {"cniVersion": "1.0.0"}}),
    ("cluster-ipam", {"ipam": {"type": "podnet-cluster-ipam", "etcdEndpoints": ["http://e:1"], "subnet": "10.9.0.0/16",
                               "etcdCAFile": "ca\u0000.pem"}}),
])
def test_a_path_a_file_cannot_have_is_a_config_error_naming_it(ptype: str, conf: dict[str, Any]) -> None:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": f"podnet-{ptype}", **conf}).encode()
    out = run(REGISTRY[ptype], ENV, stdin)
    err = json.loads(out.stdout)
    assert out.exit_code == 1 and err["code"] == 7 and ("dataDir" in err["msg"] or "etcdCAFile" in err["msg"]), err
