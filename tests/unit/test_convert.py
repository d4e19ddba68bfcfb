"""Result conversion for every version pair against golden files in tests/data/convert."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from podnet.cni.convert import parse_result, render_result
from podnet.cni.errors import CNIError
from podnet.cni.version import SUPPORTED

DATA = Path(__file__).resolve().parent.parent / "data" / "convert"
CASES = sorted(p.stem for p in DATA.glob("*.json"))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("version", SUPPORTED)
def test_golden(case: str, version: str):
    golden = json.loads((DATA / f"{case}.json").read_text())
    res = parse_result(golden["input"])
    want = golden["expected"][version]
    if want == "error":
        with pytest.raises(CNIError):
            render_result(res, version)
    else:
        assert render_result(res, version) == want


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("version", SUPPORTED)
def test_round_trip_is_stable(case: str, version: str):
    """Rendering, parsing and rendering again in the same version changes nothing."""
    golden = json.loads((DATA / f"{case}.json").read_text())
    want = golden["expected"][version]
    if want == "error":
        return
    assert render_result(parse_result(want), version) == want


def test_legacy_input_upconverts():
    res = parse_result({"cniVersion": "0.2.0", "ip4": {"ip": "10.1.0.5/16", "gateway": "10.1.0.1",
                                                       "routes": [{"dst": "0.0.0.0/0"}]},
                        "ip6": {"ip": "fd00::5/64"}})
    out = render_result(res, "0.4.0")
    assert out["ips"] == [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
                          {"version": "6", "address": "fd00::5/64"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0"}]
