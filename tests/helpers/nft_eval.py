"""An interpreter of podnet's NetworkPolicy model (net/policy_nft.Model) for unit tests: the
verdict the two base chains would give a new connection, read from the model's own rule text —
so the compiler can be checked against the reference model in milliseconds, for hundreds of
generated policies, without a kernel.  It understands exactly the rule forms net/policy_nft.py
renders; anything else fails loudly.  The kernel tests check the same on real nftables."""
from __future__ import annotations

import ipaddress
from typing import Any

from podnet.net.policy_nft import DENY_CHAIN, Model

PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132}


def _in_set(model: Model, name: str, key: tuple[Any, ...]) -> bool:
    for elem in model.elements.get(name, ()):
        parts = [p.strip() for p in elem.split(" . ")]
        if len(parts) != len(key):
            raise AssertionError(f"element {elem!r} does not fit key {key} of set {name}")
        if all(_part_matches(p, k) for p, k in zip(parts, key, strict=True)):
            return True
    return False


def _part_matches(part: str, value: Any) -> bool:
    if isinstance(value, int):
        if "-" in part:
            lo, hi = part.split("-")
            return int(lo) <= value <= int(hi)
        return int(PROTO_NUM.get(part, part)) == value
    ip = ipaddress.ip_address(value)
    if "/" in part:
        return ip in ipaddress.ip_network(part, strict=False)
    return ip == ipaddress.ip_address(part)


def _rule_matches(model: Model, line: str, pkt: dict[str, Any]) -> bool:
    tokens = line.split()[:-1]            # the verdict is last
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("ip", "ip6"):
            fam = 4 if t == "ip" else 6
            if pkt["family"] != fam:
                return False
            field = tokens[i + 1]
            if tokens[i + 2] == ".":          # ip daddr . meta l4proto . th dport @set
                name = tokens[i + 8].lstrip("@")
                if not _in_set(model, name, (pkt[field], pkt["proto"], pkt["dport"])):
                    return False
                i += 9
                continue
            negate = tokens[i + 2] == "!="
            name = tokens[i + (3 if negate else 2)].lstrip("@")
            if _in_set(model, name, (pkt[field],)) == negate:
                return False
            i += 4 if negate else 3
            continue
        if t == "meta" and tokens[i + 1] == "l4proto":   # meta l4proto . th dport @set
            name = tokens[i + 5].lstrip("@")
            if not _in_set(model, name, (pkt["proto"], pkt["dport"])):
                return False
            i += 6
            continue
        raise AssertionError(f"unknown rule form: {line!r}")
    return True


def _run_chain(model: Model, chain: str, pkt: dict[str, Any], depth: int = 0) -> str:
    """'accept', 'drop', or 'continue' (fell off the end)."""
    if chain == DENY_CHAIN:
        return "drop"
    assert depth < 10
    for line in model.chains[chain]:
        words = line.split()
        if len(words) >= 2 and words[-2] in ("jump", "goto"):
            if _rule_matches(model, " ".join([*words[:-2], "x"]), pkt):
                r = _run_chain(model, words[-1], pkt, depth + 1)
                if r != "continue" or words[-2] == "goto":
                    return r
            continue
        if _rule_matches(model, line, pkt):
            return words[-1]
    return "continue"


def verdict(model: Model, src: str, dst: str, proto: int, dport: int) -> bool:
    """Whether a new connection src → dst (proto, dport) passes both base chains."""
    fam = ipaddress.ip_address(src).version
    pkt = {"family": fam, "saddr": src, "daddr": dst, "proto": proto, "dport": dport}
    for mapname, addr in ((f"eg{fam}", src), (f"in{fam}", dst)):
        chain = model.maps[mapname].get(addr)
        if chain is None:
            continue
        if _run_chain(model, chain, pkt) != "accept":
            return False
    return True
