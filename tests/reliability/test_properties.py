"""Property-based tests (hypothesis) of the pure layers: whatever JSON a runtime sends, the
answer is a CNI error with a code and a message naming the field, or a valid value — never
another exception; results convert across every version without losing what the older one can
carry.  Seeded by hypothesis' database-free derandomised mode in CI (the same examples each run)."""
from __future__ import annotations

import copy
import ipaddress
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podnet.cni.convert import parse_result, render_result
from podnet.cni.errors import CNIError
from podnet.cni.request import from_env
from podnet.cni.types import Interface, IPConfig, Result, Route
from podnet.cni.version import SUPPORTED, is_legacy
from podnet.ipam.ranges import parse_range_sets
from podnet.plugins import (
    bandwidth,
    bridge,
    cluster_ipam,
    dhcp,
    firewall,
    host_device,
    host_local,
    ipvlan,
    macvlan,
    portmap,
    ptp,
    sbr,
    static,
    tuning,
    vlan,
)

PROFILE = settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**64, max_value=2**64) | st.floats(allow_nan=False)
    | st.text(max_size=40) | st.sampled_from(["10.1.0.0/16", "10.1.0.1", "fd00::/64", "eth0", "tcp", "02:00:00:00:00:01"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12)

HL = {"type": "host-local", "subnet": "10.1.0.0/16", "dataDir": "/nonexistent/pn"}
BASES: dict[str, tuple[Any, dict[str, Any]]] = {
    "bridge": (bridge.parse_conf, {"bridge": "br0", "isGateway": True, "mtu": 1400, "ipam": HL}),
    "ptp": (ptp.parse_conf, {"ipMasq": True, "mtu": 1400, "ipam": HL}),
    "macvlan": (macvlan.parse_conf, {"master": "eth9", "mode": "bridge", "ipam": HL}),
    "ipvlan": (ipvlan.parse_conf, {"master": "eth9", "mode": "l2", "ipam": HL}),
    "vlan": (vlan.parse_conf, {"master": "eth9", "vlanId": 5, "ipam": HL}),
    "host-device": (host_device.parse_conf, {"device": "eth9"}),
    "host-local": (host_local.parse_conf, {"ipam": {**HL, "ranges": [[{"subnet": "10.2.0.0/24"}]]}}),
    "static": (static.addresses, {"ipam": {"type": "static", "addresses": [{"address": "10.3.0.5/24"}]}}),
    "cluster-ipam": (cluster_ipam.parse_conf, {"ipam": {"type": "cluster-ipam", "etcdEndpoints": ["http://e:2379"],
                                                        "subnet": "10.4.0.0/16", "blockSize": 26}}),
    "dhcp": (dhcp.parse_conf, {"ipam": {"type": "dhcp", "provide": [{"option": "host-name", "value": "x"}],
                                        "request": [{"option": 121}], "timeout": 5}}),
    "firewall": (firewall.parse_conf, {"ingressPolicy": "same-bridge"}),
    "bandwidth": (bandwidth.parse_limits, {"ingressRate": 1000000, "ingressBurst": 10000,
                                           "runtimeConfig": {"bandwidth": {"egressRate": 8000, "egressBurst": 800}}}),
    "portmap": (lambda r: (portmap.parse_conf(r), portmap.parse_mappings(r)),
                {"snat": True, "runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80,
                                                                  "protocol": "tcp"}]}}),
    "tuning": (tuning.parse_conf, {"mtu": 1400, "sysctl": {"net.ipv4.conf.eth0.rp_filter": "1"},
                                   "mac": "02:00:00:00:00:01"}),
    "sbr": (sbr.parse_conf, {"table": 100, "gateways": ["10.1.0.1"]}),
}
ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0",
       "CNI_PATH": "/opt/cni/bin"}


def paths_of(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(d, dict):
        for k, v in d.items():
            out += paths_of(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += paths_of(v, (*prefix, i))
    return out


def put(d: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        d = d[p]
    d[path[-1]] = value


@st.composite
def mutated(draw: Any, base: dict[str, Any]) -> dict[str, Any]:
    conf = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = paths_of(conf)
        if not paths or (draw(st.booleans()) and draw(st.booleans())):
            conf[draw(st.text(max_size=10))] = draw(json_values)
            continue
        path = draw(st.sampled_from(paths))
        try:
            put(conf, path, draw(json_values))
        except (KeyError, IndexError, TypeError):
            pass
    return conf


def parse_or_config_error(parse: Any, conf: dict[str, Any]) -> None:
    stdin = json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "x", **conf}).encode()
    try:
        parse(from_env(ENV, stdin))
    except CNIError as e:
        assert e.code in (1, 4, 6, 7), (e.code, e.msg)
        assert e.msg and "Error:" not in e.msg.split(":")[0], e.msg


def make_test(ptype: str) -> Any:
    parse, base = BASES[ptype]

    @PROFILE
    @given(mutated(base))
    def test(conf: dict[str, Any]) -> None:
        parse_or_config_error(parse, conf)
    test.__name__ = f"test_any_json_in_any_key_of_{ptype.replace('-', '_')}_is_a_config_error_or_valid"
    return test


for _ptype in BASES:
    globals()[f"test_config_{_ptype.replace('-', '_')}"] = make_test(_ptype)


ips4 = st.ip_addresses(v=4)
ips6 = st.ip_addresses(v=6)


@st.composite
def results(draw: Any) -> Result:
    fams = draw(st.sampled_from([(4,), (6,), (4, 6)]))
    ips = []
    for fam in fams:
        addr = draw(ips4 if fam == 4 else ips6)
        plen = draw(st.integers(8, 32 if fam == 4 else 128))
        gw = draw(st.none() | (ips4 if fam == 4 else ips6))
        ips.append(IPConfig(ipaddress.ip_interface(f"{addr}/{plen}"), gw, draw(st.none() | st.just(0))))
    routes = tuple(Route(ipaddress.ip_network(f"{draw(ips4)}/{p}", strict=False), draw(st.none() | ips4))
                   for p in draw(st.lists(st.integers(0, 32), max_size=3)))
    ifaces = (Interface("eth0", "02:00:00:00:00:01", sandbox="/run/netns/x"),)
    return Result("1.1.0", ifaces, tuple(ips), routes)


@PROFILE
@given(results(), st.sampled_from(SUPPORTED), st.sampled_from(SUPPORTED))
def test_results_convert_between_every_pair_of_versions(res: Result, a: str, b: str) -> None:
    rendered = render_result(res, a)
    json.dumps(rendered)                                     # always JSON
    back = parse_result(json.loads(json.dumps(rendered)), a)
    again = render_result(back, b)
    firsts = {ip.address.version: ip.address for ip in reversed(res.ips)}
    got = {ip.address.version: ip.address for ip in parse_result(again, b).ips}
    if is_legacy(a) or is_legacy(b):
        assert got == firsts, "the first address of each family survives a legacy version"
    else:
        assert [ip.address for ip in parse_result(again, b).ips] == [ip.address for ip in res.ips]


@PROFILE
@given(json_values)
def test_any_json_as_a_prev_result_parses_or_is_a_decode_error(value: Any) -> None:
    try:
        parse_result(value, "1.0.0")
    except CNIError as e:
        assert e.code in (1, 6), (e.code, e.msg)


@PROFILE
@given(st.dictionaries(st.sampled_from(["subnet", "ranges", "rangeStart", "rangeEnd", "gateway"]), json_values))
def test_range_parsing_is_valid_or_a_config_error_and_iteration_stays_inside(conf: dict[str, Any]) -> None:
    try:
        sets = parse_range_sets(conf)
    except CNIError as e:
        assert e.code == 7 and e.msg.startswith("invalid config: ")
        return
    for rs in sets:
        for n, (ip, r) in enumerate(rs.iterate_from(None)):
            assert ip in r.subnet and r.start <= ip <= r.end
            if n > 50:
                break
