"""The NetworkPolicy table (`inet podnet_policy`) as typed values, and the nftables transactions
that make the kernel hold them.  Nothing here is spliced from user input: set and chain names are
made by the compiler from hashes, elements are rendered from addresses and integers, rules from
the match types below.

    chain egress   hook forward priority 0    ct established,related accept · IPv6 ND accept · ip saddr vmap @eg4 …
    chain ingress  hook forward priority 10   ct established,related accept · IPv6 ND accept · ip daddr vmap @in4 …

A packet must pass both base chains (accept ends one base chain, the next still sees it; drop is
final), so a connection needs egress allowed at its source and ingress at its destination.  The
maps send a local isolated pod's address to the chain of its group of policies (`grp_…`: a jump
to each policy's chain, then drop); a policy chain accepts what one of its rules allows.  Per
packet: one map lookup and the few policies that select that pod.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from . import nft

TABLE = "inet podnet_policy"
MAPS = {"in4": ("ip", "daddr", "ipv4_addr"), "in6": ("ip6", "daddr", "ipv6_addr"),
        "eg4": ("ip", "saddr", "ipv4_addr"), "eg6": ("ip6", "saddr", "ipv6_addr")}
DENY_CHAIN = "deny_all"          # where a pod goes whose policy could not be computed (fail closed)
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
PROTO = {4: "ip", 6: "ip6"}
ND_TYPES = ("nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert", "nd-redirect")


@dataclass(frozen=True)
class SetSpec:
    type: str                    # e.g. "ipv4_addr", "inet_proto . inet_service"
    interval: bool = False

    def declaration(self, name: str) -> str:
        flags = " flags interval; auto-merge;" if self.interval else ""
        return f"add set {TABLE} {name} {{ type {self.type};{flags} }}"


# ------------------------------------------------------------------ rule building (typed → text)
@dataclass(frozen=True)
class AddrIn:
    family: int
    field: str                   # saddr | daddr
    set: str
    negate: bool = False

    def text(self) -> str:
        return f"{PROTO[self.family]} {self.field} {'!= ' if self.negate else ''}@{self.set}"


@dataclass(frozen=True)
class PortIn:
    set: str                     # inet_proto . inet_service (interval)

    def text(self) -> str:
        return f"meta l4proto . th dport @{self.set}"


@dataclass(frozen=True)
class AddrPortIn:
    family: int
    field: str                   # the pod whose named port it is
    set: str                     # addr . inet_proto . inet_service

    def text(self) -> str:
        return f"{PROTO[self.family]} {self.field} . meta l4proto . th dport @{self.set}"


@dataclass(frozen=True)
class FamilyIs:
    family: int

    def text(self) -> str:
        return f"meta nfproto {'ipv4' if self.family == 4 else 'ipv6'}"


Match = AddrIn | PortIn | AddrPortIn | FamilyIs


def rule(matches: Iterable[Match], verdict: str) -> str:
    """One rule line: the matches (ANDed) then a verdict (accept, drop, jump <chain>)."""
    return " ".join([*(m.text() for m in matches), verdict])


def port_element(protocol: int, lo: int, hi: int) -> str:
    return f"{protocol} . {lo}" if lo == hi else f"{protocol} . {lo}-{hi}"


# ------------------------------------------------------------------ the model and its transactions
FOLD_MIN = 64       # overlays up to this size never fold (a small set's copy costs no more)


class Elements:
    """A set's members as an immutable value that changes in O(change), not O(members): a base
    frozenset and small overlays (`plus` not in the base, `minus` out of it), folded into a new
    base once they grow past an eighth of it.  In a big cluster one set holds tens of thousands
    of pods' addresses and a pod event changes a few of them in many sets — copying each whole
    set per event cost more than the rest of the event, and diffing two of them did again."""

    __slots__ = ("base", "minus", "plus")

    def __init__(self, base: Iterable[str] = (), plus: frozenset[str] = frozenset(),
                 minus: frozenset[str] = frozenset()) -> None:
        self.base = base if isinstance(base, frozenset) else frozenset(base)
        self.plus, self.minus = plus, minus

    def __contains__(self, e: object) -> bool:
        return e in self.plus or (e in self.base and e not in self.minus)

    def __iter__(self) -> Iterator[str]:
        minus = self.minus
        yield from (e for e in self.base if e not in minus) if minus else self.base
        yield from self.plus

    def __len__(self) -> int:
        return len(self.base) - len(self.minus) + len(self.plus)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Elements):
            return NotImplemented
        if other.base is self.base:
            return other.plus == self.plus and other.minus == self.minus
        return len(self) == len(other) and all(e in other for e in self)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Elements({sorted(self)!r})"

    def changed(self, removed: Iterable[str], added: Iterable[str]) -> Elements:
        """These members out, those in (an element in both ends up in)."""
        base = self.base
        removed, added = set(removed), set(added)
        plus = (self.plus - removed) | {e for e in added if e not in base}
        minus = (self.minus - added) | {e for e in removed - added if e in base}
        if len(plus) + len(minus) > max(FOLD_MIN, len(base) >> 3):
            return Elements(frozenset(e for e in base if e not in minus) | plus)
        return Elements(base, frozenset(plus), frozenset(minus))

    def delta(self, after: Elements) -> tuple[set[str], set[str]]:
        """(removed, added) from this to `after`: from the overlays alone when both share a base."""
        if after.base is self.base:
            maybe = self.plus | self.minus | after.plus | after.minus
            return ({e for e in maybe if e in self and e not in after},
                    {e for e in maybe if e in after and e not in self})
        mine, theirs = frozenset(self), frozenset(after)
        return set(mine - theirs), set(theirs - mine)


NO_ELEMENTS = Elements()


@dataclass
class Model:
    sets: dict[str, SetSpec] = field(default_factory=dict)
    elements: dict[str, Elements] = field(default_factory=dict)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {m: {} for m in MAPS})  # ip → chain

    def copy(self) -> Model:
        return Model(dict(self.sets), dict(self.elements), dict(self.chains), {k: dict(v) for k, v in self.maps.items()})

    def counts(self) -> dict[str, int]:
        return {"sets": len(self.sets), "chains": len(self.chains),
                "elements": sum(len(e) for e in self.elements.values()) + sum(len(m) for m in self.maps.values()),
                "rules": sum(len(r) for r in self.chains.values())}


def _base() -> list[str]:
    lines = [f"add table {TABLE}"]
    for name, (_, _, typ) in MAPS.items():
        lines.append(f"add map {TABLE} {name} {{ type {typ} : verdict; }}")
    lines.append(f"add chain {TABLE} {DENY_CHAIN}")
    return lines


def _base_chains(pod_interface: str = "") -> list[str]:
    """The node's base chains (forward hook), or — pod_interface given — a pod's own (pod-network
    underlay: its eth0 traffic never crosses the node, so the pod's netns holds the same table,
    hooked on its output and input for that interface only; what uses the leg is the node's)."""
    if pod_interface:
        hooks = ("output priority 0", "input priority 0")
        skip = (f'oifname != "{pod_interface}" accept', f'iifname != "{pod_interface}" accept')
    else:
        hooks, skip = ("forward priority 0", "forward priority 10"), ("", "")
    lines = [f"add chain {TABLE} egress {{ type filter hook {hooks[0]}; policy accept; }}",
             f"add chain {TABLE} ingress {{ type filter hook {hooks[1]}; policy accept; }}",
             f"flush chain {TABLE} egress", f"flush chain {TABLE} ingress", f"flush chain {TABLE} {DENY_CHAIN}",
             f"add rule {TABLE} {DENY_CHAIN} drop"]
    for (chain, maps), first in zip((("egress", ("eg4", "eg6")), ("ingress", ("in4", "in6"))), skip, strict=True):
        if first:
            lines.append(f"add rule {TABLE} {chain} {first}")
        lines.append(f"add rule {TABLE} {chain} ct state established,related accept")
        # IPv6 neighbour discovery is IPv6's ARP: never policy's business (ARP never reaches an ip hook)
        lines.append(f"add rule {TABLE} {chain} icmpv6 type {{ {', '.join(ND_TYPES)} }} accept")
        for m in maps:
            fam, fieldname, _ = MAPS[m]
            lines.append(f"add rule {TABLE} {chain} {fam} {fieldname} vmap @{m}")
    return lines


def _elements(name: str, elems: Iterable[str], verb: str) -> list[str]:
    """add/delete element lines for a set, in chunks (one huge line is slow to parse)."""
    elems = sorted(elems)
    return [f"{verb} element {TABLE} {name} {{ " + ", ".join(elems[i:i + 500]) + " }"
            for i in range(0, len(elems), 500)]


def full_script(model: Model, pod_interface: str = "", fresh: bool = False) -> str:
    """Replace the table with `model` in one transaction (start, resync after a restart): packets
    see the old table or the new one, never a half-made one.  pod_interface: a pod's table.
    fresh: there is no table yet (a new pod's netns) — no delete, which would cost the transaction
    a kernel grace period (~10 ms)."""
    lines = [f"add table {TABLE}", *([] if fresh else [f"delete table {TABLE}"]), *_base()]
    lines += [spec.declaration(name) for name, spec in sorted(model.sets.items())]
    lines += [f"add chain {TABLE} {name}" for name in sorted(model.chains)]
    for name in sorted(model.sets):
        lines += _elements(name, model.elements.get(name, NO_ELEMENTS), "add")
    for name, rules in sorted(model.chains.items()):
        lines += [f"add rule {TABLE} {name} {r}" for r in rules]
    for m, elems in model.maps.items():
        for ip, chain in sorted(elems.items()):
            lines.append(f"add element {TABLE} {m} {{ {ip} : goto {chain} }}")
    lines += _base_chains(pod_interface)
    return "\n".join(lines) + "\n"


def diff_script(old: Model, new: Model) -> str:
    """The transaction taking the kernel from `old` to `new`: new sets and chains first, changed
    chains flushed and refilled, element and map changes, then what is gone (map elements before
    the chains they point to, rules before the sets they use).  "" when nothing changed."""
    lines: list[str] = []
    for name in sorted(new.sets.keys() - old.sets.keys()):
        lines.append(new.sets[name].declaration(name))
    for name in sorted(new.chains.keys() - old.chains.keys()):
        lines.append(f"add chain {TABLE} {name}")
    for name in sorted(new.sets):
        before = old.elements.get(name, NO_ELEMENTS) if name in old.sets else NO_ELEMENTS
        after = new.elements.get(name, NO_ELEMENTS)
        if before is after:       # the same object: an untouched set, nothing to compare
            continue
        removed, added = before.delta(after)
        if not removed and not added:
            continue
        if new.sets[name].interval and before:
            # the kernel merged overlapping intervals: what was added is not what can be deleted
            lines.append(f"flush set {TABLE} {name}")
            lines += _elements(name, after, "add")
            continue
        lines += _elements(name, removed, "delete") if removed else []
        lines += _elements(name, added, "add") if added else []
    for name in sorted(new.chains):
        if name in old.chains and old.chains[name] == new.chains[name]:
            continue
        if name in old.chains:
            lines.append(f"flush chain {TABLE} {name}")
        lines += [f"add rule {TABLE} {name} {r}" for r in new.chains[name]]
    for m in MAPS:
        o, n = old.maps.get(m, {}), new.maps.get(m, {})
        for ip in sorted(o.keys() - n.keys() | {ip for ip in o.keys() & n.keys() if o[ip] != n[ip]}):
            lines.append(f"delete element {TABLE} {m} {{ {ip} }}")
        for ip in sorted(n.keys() - o.keys() | {ip for ip in o.keys() & n.keys() if o[ip] != n[ip]}):
            lines.append(f"add element {TABLE} {m} {{ {ip} : goto {n[ip]} }}")
    gone_chains = sorted(old.chains.keys() - new.chains.keys())
    lines += [f"flush chain {TABLE} {name}" for name in gone_chains]
    lines += [f"delete chain {TABLE} {name}" for name in gone_chains]
    lines += [f"delete set {TABLE} {name}" for name in sorted(old.sets.keys() - new.sets.keys())]
    return "\n".join(lines) + "\n" if lines else ""


def apply(script: str) -> None:
    """One transaction: all of it, or (an error) none of it — at once, never held for a pod's ADD
    transaction (nft.one_transaction): admission must be in the kernel before the ADD goes on."""
    if script:
        nft.run_now(script)


def apply_in(netns_path: str, script: str) -> None:
    """One transaction in a pod's netns (NetnsGone when the pod is gone)."""
    from . import netns
    if script:
        with netns.opened(netns_path) as fd, netns.entered(fd):
            nft.run_now(script)


def remove_in(netns_path: str) -> None:
    """A pod's own table goes (its DEL, the netns still there); nothing to do when the pod is gone."""
    from . import netns
    from .errors import NetnsGone
    try:
        with netns.opened(netns_path) as fd, netns.entered(fd):
            nft.run_ignoring_missing(f"delete table {TABLE}\n")
    except NetnsGone:
        pass


def frame_script() -> str:
    """The table's frame (maps, deny chain, base chains), leaving any sets, policy chains and map
    elements a previous agent left in place: its rules keep enforcing until the new agent's
    first full transaction replaces them."""
    return "\n".join([*_base(), *_base_chains()]) + "\n"


def forget(ips: Iterable[str]) -> None:
    """These addresses leave the maps (the in-process DEL of a pod the agent may have mapped)."""
    if not table_exists():
        return
    for ip in ips:
        fam = 6 if ":" in ip else 4
        for m in (f"in{fam}", f"eg{fam}"):
            nft.run_ignoring_missing(f"delete element {TABLE} {m} {{ {ip} }}\n")


def table_exists() -> bool:
    return bool(nft.list_json(f"table {TABLE}"))


def deny(ips: Iterable[str]) -> None:
    """Fail closed: these addresses go to the deny chain both ways (the in-process path, when the
    agent that computes policy is away).  Only when the table exists (policy is on)."""
    if not table_exists():
        return
    lines = []
    for ip in ips:
        fam = 6 if ":" in ip else 4
        for m in (f"in{fam}", f"eg{fam}"):
            lines += [f"delete element {TABLE} {m} {{ {ip} }}", f"add element {TABLE} {m} {{ {ip} : goto {DENY_CHAIN} }}"]
    for line in lines:
        nft.run_ignoring_missing(line + "\n")
