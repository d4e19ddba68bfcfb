"""The pod annotations of the Network Plumbing Working Group (dispatch/netselect.py): every form of
`k8s.v1.cni.cncf.io/networks`, the errors naming the element and field, network-status entries."""
from __future__ import annotations

import pytest

from podnet.dispatch import netselect


def test_text_form_names_namespaces_and_interfaces() -> None:
    got = netselect.parse("macvlan-conf, other/ipvl@eth9 ,  third", "team")
    assert [(s.namespace, s.name, s.interface) for s in got] == [
        ("team", "macvlan-conf", "net1"), ("other", "ipvl", "eth9"), ("team", "third", "net3")]


def test_json_form_with_ips_mac_and_default_route() -> None:
    got = netselect.parse('[{"name": "a", "namespace": "x", "interface": "data0", "ips": ["10.1.0.5/24"],'
                          ' "mac": "02:00:00:AA:BB:CC", "default-route": ["10.1.0.1"], "cni-args": {"k": "v"}},'
                          ' {"name": "b"}]', "pods")
    a, b = got
    assert (a.key, a.interface, a.ips, a.mac, a.default_route, a.cni_args) == (
        "x/a", "data0", ("10.1.0.5/24",), "02:00:00:aa:bb:cc", ("10.1.0.1",), {"k": "v"})
    assert (b.key, b.interface) == ("pods/b", "net2")


def test_empty_annotation_is_no_attachment() -> None:
    assert netselect.parse("  ", "x") == []


@pytest.mark.parametrize("annotation, named", [
    ("Bad_Name", "[0].name"), ("ok@eth%d", "[0].interface"), ("ok@averyveryverylongname", "[0].interface"),
    ('[{"name": "a", "ips": ["10.0.0.300"]}]', "[0].ips"), ('[{"name": "a", "mac": "zz"}]', "[0].mac"),
    ('[{"name": "a", "default-route": ["x"]}]', "[0].default-route"), ('{"name": "a"}', "not a list"),
    ("a@net1, b@net1", "asked for twice"), ("a,,b", "empty entry"), ('[{"name": "a"}, 7]', "[1]"),
    ('[{"name": "a", "portMappings": 3}]', "[0].portMappings"),
])
def test_a_bad_annotation_names_what_is_wrong(annotation: str, named: str) -> None:
    with pytest.raises(ValueError) as e:
        netselect.parse(annotation, "x")
    assert named in str(e.value) and netselect.NETWORKS in str(e.value), str(e.value)


def test_status_entry_takes_the_interfaces_addresses_mac_and_dns() -> None:
    result = {"cniVersion": "1.0.0",
              "interfaces": [{"name": "veth1"}, {"name": "net1", "mac": "02:aa:00:00:00:01", "sandbox": "/ns"}],
              "ips": [{"address": "10.9.0.5/24", "interface": 1}, {"address": "fd09::5/64", "interface": 1}],
              "dns": {"nameservers": ["10.9.0.1"], "search": []}}
    assert netselect.status_entry("x/a", "net1", result, "/ns", default=False) == {
        "name": "x/a", "interface": "net1", "ips": ["10.9.0.5", "fd09::5"], "mac": "02:aa:00:00:00:01",
        "dns": {"nameservers": ["10.9.0.1"]}}
