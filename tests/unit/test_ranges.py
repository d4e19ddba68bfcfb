"""host-local range parsing, defaults and validation (code 7 naming the field)."""
from __future__ import annotations

import ipaddress

import pytest

from podnet.cni.errors import CNIError
from podnet.ipam.ranges import parse_range_sets

ip = ipaddress.ip_address


def test_defaults_match_the_reference():
    (rs,) = parse_range_sets({"subnet": "10.0.0.0/24"})
    r = rs.ranges[0]
    assert (r.start, r.end, r.gateway) == (ip("10.0.0.1"), ip("10.0.0.254"), ip("10.0.0.1"))
    (rs6,) = parse_range_sets({"ranges": [[{"subnet": "fd00::/120"}]]})
    assert rs6.ranges[0].end == ip("fd00::ff")


@pytest.mark.parametrize("conf,field", [
    ({"subnet": "10.0.0.1/24"}, "subnet"),                      # host bits set
    ({"subnet": "10.0.0.0/31"}, "subnet"),                      # too small
    ({"subnet": "nonsense"}, "subnet"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.5"}, "rangeStart"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.50", "rangeEnd": "10.0.0.10"}, "rangeStart"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]]}, "overlap"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/24"}]]}, "overlap"),
    ({}, "ranges"),
    ({"ranges": "10.0.0.0/24"}, "ranges"),
])
def test_invalid_ranges_are_code_7_naming_the_field(conf, field):
    with pytest.raises(CNIError) as e:
        parse_range_sets(conf)
    assert e.value.code == 7 and field in e.value.msg


def test_round_robin_iteration_wraps_across_ranges():
    (rs,) = parse_range_sets({"ranges": [[{"subnet": "10.0.0.0/29"}, {"subnet": "10.0.1.0/29"}]]})
    order = [str(a) for a, _ in rs.iterate_from(ip("10.0.1.5"))]
    assert order[0] == "10.0.1.6" and order[1] == "10.0.0.1" and order[-1] == "10.0.1.5"
    assert len(order) == len(set(order)) == 12
    assert next(str(a) for a, _ in rs.iterate_from(None)) == "10.0.0.1"
