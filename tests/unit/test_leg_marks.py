"""The leg's packet marks (net/leg.py) are single bits clear of kube-proxy's: it masquerades any
packet carrying 0x4000 and drops 0x8000, so a mark touching those bits silently NATs a Service's
clients (found on the underlay lab: every backend saw the node's address)."""
from podnet.net import leg

KUBE_PROXY_BITS = 0x4000 | 0x8000


def test_marks_are_single_bits_clear_of_kube_proxys() -> None:
    for mark in (leg.REPLY_MARK, leg.FORWARD_MARK):
        assert mark & (mark - 1) == 0, f"{mark:#x} is not one bit"
        assert mark & KUBE_PROXY_BITS == 0, f"{mark:#x} carries kube-proxy's masquerade/drop bits"
    assert leg.REPLY_MARK != leg.FORWARD_MARK


def test_the_rules_only_add_their_bit() -> None:
    assert f"meta mark set meta mark | {leg.FORWARD_MARK:#x}" in leg.node_script([])
    script = leg.reply_marks_script("leg0")
    assert f"ct mark set ct mark | {leg.REPLY_MARK:#x}" in script and f"meta mark set meta mark | {leg.REPLY_MARK:#x}" in script
