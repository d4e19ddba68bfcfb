"""NetworkPolicy → the nftables model (net/policy_nft.py), computed once in full and then kept
current event by event:

  a pod appears, changes labels or goes   its addresses join or leave the selector sets whose
                                          peers match it, and (a local pod) its map elements move
                                          between group chains — elements only, O(policies)
  a namespace's labels change             the same, for the pods of that namespace
  a policy changes                        its own sets and chains are remade, and the local pods
                                          of its namespace regrouped — O(pods) for that policy

Per policy (id = a hash of namespace/name): a chain per direction (`<id>_in`, `<id>_eg`) with, per
rule, accept lines for every (peer kind × port kind); sets `<id>_<d><r>_s4|6` (selector peers'
addresses), `…_b<j>4|6` and `…_x<j>4|6` (an ipBlock and its excepts, intervals), `…_n` (protocol .
port ranges), `…_m4|6` (address . protocol . port of named ports).  A local pod selected in a
direction is mapped to the chain of its group of policies (`g<hash>`: a jump to each, then drop).
"""
from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...net.policy_nft import (
    ADDR_TYPE,
    DENY_CHAIN,
    NO_ELEMENTS,
    AddrIn,
    AddrPortIn,
    Elements,
    Match,
    Model,
    PortIn,
    SetSpec,
    port_element,
    rule,
)
from .cluster import ClusterView, PodInfo
from .cnp import ClusterPolicy, CPeer, CRule
from .spec import PROTOCOLS, IPNet, Peer, Policy, Rule

FAMILIES = (4, 6)
PORT_SET = SetSpec("inet_proto . inet_service", interval=True)


def _h(text: str, n: int = 12) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:n]


def policy_id(p: Policy) -> str:
    return "p" + _h(p.key)


def peer_matches(peer: Peer, pod: PodInfo, policy_ns: str, view: ClusterView) -> bool:
    """Whether a pod is one of a selector peer's pods (ipBlock peers match addresses, not pods)."""
    if peer.block is not None or pod.host_network:
        return False
    if peer.namespaces is None:
        return pod.namespace == policy_ns and (peer.pods is None or peer.pods.matches(pod.label_map))
    return peer.namespaces.matches(view.namespace_labels(pod.namespace)) and \
        (peer.pods is None or peer.pods.matches(pod.label_map))


def selects(p: Policy, pod: PodInfo) -> bool:
    return pod.namespace == p.namespace and not pod.host_network and p.pod_selector.matches(pod.label_map)


@dataclass
class SelectorSet:
    """Addresses of the pods a rule's selector peers match."""
    names: dict[int, str]
    peers: tuple[Peer, ...]
    namespace: str

    def has(self, pod: PodInfo, view: ClusterView) -> bool:
        return any(peer_matches(p, pod, self.namespace, view) for p in self.peers)


@dataclass
class NamedPortSet:
    """address . protocol . port of the pods that name a port so: ingress — the pods the policy
    selects (the destinations); egress — every pod (a destination anywhere)."""
    names: dict[int, str]
    port: str
    protocol: str
    policy: Policy | None            # None: any pod

    def elements(self, pod: PodInfo, view: ClusterView, fam: int) -> set[str]:
        if pod.host_network or (self.policy is not None and not selects(self.policy, pod)):
            return set()
        number = pod.named_port(self.port, self.protocol)
        if number is None:
            return set()
        return {f"{ip} . {PROTOCOLS[self.protocol]} . {number}" for ip in view.pod_addrs(pod)
                if (":" in ip) == (fam == 6)}


def cnp_peer_matches(peer: CPeer, pod: PodInfo, view: ClusterView) -> bool:
    """A ClusterNetworkPolicy pod peer (namespaces, or namespaces AND pods); never a host-network pod."""
    if peer.namespaces is None or pod.host_network:
        return False
    return peer.namespaces.matches(view.namespace_labels(pod.namespace)) and \
        (peer.pods is None or peer.pods.matches(pod.label_map))


@dataclass
class CnpSelectorSet:
    """Addresses of the pods a ClusterNetworkPolicy rule's pod peers match (any namespace)."""
    names: dict[int, str]
    peers: tuple[CPeer, ...]
    namespace: str = ""

    def has(self, pod: PodInfo, view: ClusterView) -> bool:
        return any(cnp_peer_matches(p, pod, view) for p in self.peers)


def pods_by_namespace(pods: list[PodInfo]) -> dict[str, list[PodInfo]]:
    out: dict[str, list[PodInfo]] = {}
    for pod in pods:
        out.setdefault(pod.namespace, []).append(pod)
    return out


def candidate_namespaces(ss: SelectorSet | CnpSelectorSet, by_ns: dict[str, list[PodInfo]],
                         view: ClusterView) -> set[str]:
    """The namespaces whose pods a set's peers could match (a superset: has() still decides)."""
    out: set[str] = set()
    for peer in ss.peers:
        if getattr(peer, "block", None) is not None:
            continue
        if peer.namespaces is None:
            if isinstance(ss, SelectorSet):          # a NetworkPolicy peer without one: its own namespace
                out.add(ss.namespace)
            continue                                  # (a ClusterNetworkPolicy pod peer always has one)
        out |= {ns for ns in by_ns if peer.namespaces.matches(view.namespace_labels(ns))}
    return out


PASS = "goto @PASS"            # a Pass rule's verdict, made concrete per group chain (compiler._group_chains)
VERDICT = {"Accept": "accept", "Deny": "drop", "Pass": PASS}


@dataclass
class Piece:
    """Everything one policy contributes to the model."""
    policy: Policy
    sets: dict[str, SetSpec] = field(default_factory=dict)
    fixed: dict[str, frozenset[str]] = field(default_factory=dict)     # ports, ipBlocks: only the policy changes them
    selector_sets: list[SelectorSet] = field(default_factory=list)
    named_sets: list[NamedPortSet] = field(default_factory=list)
    chains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tiered: dict[str, tuple[str, ...]] = field(default_factory=dict)   # CNP: direction → rule lines, in order


def cnp_id(cp: ClusterPolicy) -> str:
    return "c" + _h(cp.key)


def compile_cluster_policy(cp: ClusterPolicy) -> Piece:
    """A ClusterNetworkPolicy's sets and, per direction, its rule lines in order, each ending in
    its action's verdict (a Pass: PASS, made concrete in each group chain that inlines them)."""
    cid = cnp_id(cp)
    piece = Piece(cp)  # type: ignore[arg-type]
    for d, rules, peer_field in (("in", cp.ingress, "saddr"), ("eg", cp.egress, "daddr")):
        lines: list[str] = []
        for r in rules:
            lines += _cnp_rule_lines(piece, f"{cid}_{d[0]}{r.index}", r, peer_field)
        piece.tiered[d] = tuple(lines)
    return piece


def _cnp_rule_lines(piece: Piece, base: str, r: CRule, peer_field: str) -> list[str]:
    if r.match_none:
        return []
    verdict = VERDICT[r.effective]
    if r.match_all:
        return [verdict]
    port_matches: list[list[Match]] = [[]]
    if r.ports:
        piece.sets[f"{base}_n"] = PORT_SET
        piece.fixed[f"{base}_n"] = frozenset(port_element(proto, lo, hi) for proto, lo, hi in
                                             merged_ranges((PROTOCOLS[p.protocol], p.lo, p.hi) for p in r.ports))
        port_matches = [[PortIn(f"{base}_n")]]
    lines: list[str] = []
    selector_peers = tuple(p for p in r.peers if p.selects_pods)
    for fam in FAMILIES:
        peer_matches: list[list[Match]] = []
        if selector_peers:
            name = f"{base}_s{fam}"
            piece.sets[name] = SetSpec(ADDR_TYPE[fam])
            if fam == 4:
                piece.selector_sets.append(CnpSelectorSet({4: f"{base}_s4", 6: f"{base}_s6"}, selector_peers))  # type: ignore[arg-type]
            peer_matches.append([AddrIn(fam, peer_field, name)])
        nets = [n for p in r.peers for n in p.networks if n.version == fam]
        if nets:
            name = f"{base}_b{fam}"
            piece.sets[name] = SetSpec(ADDR_TYPE[fam], interval=True)
            piece.fixed[name] = frozenset(str(n) for n in _collapsed(nets))
            peer_matches.append([AddrIn(fam, peer_field, name)])
        for pm in peer_matches:
            for po in port_matches:
                line = rule([*pm, *po], verdict)
                if line not in lines:
                    lines.append(line)
    return lines


def compile_policy(p: Policy) -> Piece:
    pid = policy_id(p)
    piece = Piece(p)
    for direction, rules, peer_field, on in (("i", p.ingress, "saddr", p.isolates_ingress),
                                              ("e", p.egress, "daddr", p.isolates_egress)):
        lines: list[str] = []
        if on:
            for r, rl in enumerate(rules):
                lines += _rule_lines(piece, f"{pid}_{direction}{r}", rl, peer_field, p if direction == "i" else None)
        piece.chains[f"{pid}_{'in' if direction == 'i' else 'eg'}"] = tuple(lines)
    return piece


def _rule_lines(piece: Piece, base: str, rl: Rule, peer_field: str, ingress_of: Policy | None) -> list[str]:
    """accept lines for one rule: (each kind of peer) × (each kind of port), per family."""
    lines: list[str] = []
    port_matches: list[list[Match]] = []
    numbered = [p for p in rl.ports if not isinstance(p.port, str)]
    named = [p for p in rl.ports if isinstance(p.port, str)]
    if numbered:
        piece.sets[f"{base}_n"] = PORT_SET
        piece.fixed[f"{base}_n"] = frozenset(port_element(proto, lo, hi) for proto, lo, hi in merged_ranges(
            (PROTOCOLS[p.protocol], *((0, 65535) if p.port is None else (int(p.port), p.end_port or int(p.port))))
            for p in numbered))
    for fam in FAMILIES:
        peer_matches_by_kind: list[list[Match]] = []
        if rl.peers is None:
            peer_matches_by_kind.append([])
        else:
            selector_peers = tuple(pe for pe in rl.peers if pe.block is None)
            if selector_peers:
                name = f"{base}_s{fam}"
                piece.sets[name] = SetSpec(ADDR_TYPE[fam])
                if fam == 4:
                    piece.selector_sets.append(SelectorSet({4: f"{base}_s4", 6: f"{base}_s6"}, selector_peers,
                                                           piece.policy.namespace))
                peer_matches_by_kind.append([AddrIn(fam, peer_field, name)])
            for j, pe in enumerate(b for b in rl.peers if b.block is not None):
                assert pe.block is not None
                if pe.block.cidr.version != fam:
                    continue
                bname, xname = f"{base}_b{j}{fam}", f"{base}_x{j}{fam}"
                piece.sets[bname] = SetSpec(ADDR_TYPE[fam], interval=True)
                piece.fixed[bname] = frozenset({str(pe.block.cidr)})
                match: list[Match] = [AddrIn(fam, peer_field, bname)]
                excepts = [x for x in pe.block.excepts if x.version == fam]
                if excepts:
                    piece.sets[xname] = SetSpec(ADDR_TYPE[fam], interval=True)
                    piece.fixed[xname] = frozenset(str(x) for x in _collapsed(excepts))
                    match.append(AddrIn(fam, peer_field, xname, negate=True))
                peer_matches_by_kind.append(match)
        port_matches = []
        if not rl.ports:
            port_matches.append([])
        if numbered:
            port_matches.append([PortIn(f"{base}_n")])
        if named:
            mname = f"{base}_m{fam}"
            piece.sets[mname] = SetSpec(f"{ADDR_TYPE[fam]} . inet_proto . inet_service")
            if fam == 4:
                for n in named:
                    piece.named_sets.append(NamedPortSet({4: f"{base}_m4", 6: f"{base}_m6"}, str(n.port), n.protocol,
                                                         ingress_of))
            port_matches.append([AddrPortIn(fam, "daddr", mname)])
        for pm in peer_matches_by_kind:
            for po in port_matches:
                line = rule([*pm, *po], "accept")
                if line not in lines:
                    lines.append(line)
    return lines


def _collapsed(nets: list[IPNet]) -> list[IPNet]:
    """Overlapping excepts joined (one family at a time, as collapse_addresses wants)."""
    out: list[IPNet] = []
    out += ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv4Network))
    out += ipaddress.collapse_addresses(n for n in nets if isinstance(n, ipaddress.IPv6Network))
    return out


def merged_ranges(ranges: Iterable[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(protocol, first, last) port ranges with overlapping and adjacent ones joined: the kernel
    refuses overlapping intervals in a concatenated set ("File exists")."""
    out: list[tuple[int, int, int]] = []
    for proto, lo, hi in sorted(ranges):
        if out and out[-1][0] == proto and lo <= out[-1][2] + 1:
            out[-1] = (proto, out[-1][1], max(hi, out[-1][2]))
        else:
            out.append((proto, lo, hi))
    return out


class Compiler:
    """The model for a ClusterView, kept current by the on_* methods (each returns the new model;
    the engine diffs it against what the kernel holds).  Pod events touch only the addresses
    involved: for each, which pods hold it now decides its set memberships and its map entry —
    so an address that moved from one pod to another (reused by CNI before the API caught up)
    ends up exactly as a full compile would put it."""

    def __init__(self, view: ClusterView) -> None:
        self.view = view
        self.pieces: dict[str, Piece] = {}
        self.model = Model()

    # ------------------------------------------------------------ full
    def full(self) -> Model:
        self.pieces = {k: compile_policy(p) for k, p in self.view.policies.items()}
        self.pieces.update({k: compile_cluster_policy(cp) for k, cp in self.view.cluster_policies.items()})
        m = Model()
        pods = list(self.view.pods.values())
        by_ns = pods_by_namespace(pods)
        for piece in self.pieces.values():
            self._add_piece(m, piece, pods, by_ns)
        self._map(m, self._local_addresses())
        self._drop_unused_groups(m)
        self.model = m
        return m

    def _add_piece(self, m: Model, piece: Piece, pods: list[PodInfo],
                   by_ns: dict[str, list[PodInfo]] | None = None) -> None:
        m.sets.update(piece.sets)
        m.chains.update(piece.chains)
        for name in piece.sets:
            m.elements[name] = Elements(piece.fixed.get(name, frozenset()))
        by_ns = pods_by_namespace(pods) if by_ns is None else by_ns
        for ss in piece.selector_sets:
            m.elements.update(self._selector_elements(ss, by_ns))
        named = [pod for pod in pods if pod.ports] if piece.named_sets else []
        for ns in piece.named_sets:
            for fam in FAMILIES:
                m.elements[ns.names[fam]] = Elements(frozenset(m.elements.get(ns.names[fam], NO_ELEMENTS)) | frozenset(
                    e for pod in named for e in ns.elements(pod, self.view, fam)))

    def _selector_elements(self, ss: SelectorSet | CnpSelectorSet, by_ns: dict[str, list[PodInfo]]
                           ) -> dict[str, Elements]:
        """A selector set's addresses per family, looking only at the pods of the namespaces its
        peers can match (a cluster's pods are many; a peer's namespaces are few)."""
        found: dict[int, list[str]] = {fam: [] for fam in FAMILIES}
        for namespace in candidate_namespaces(ss, by_ns, self.view):
            for pod in by_ns.get(namespace, ()):
                if ss.has(pod, self.view):
                    for addr in self.view.pod_addrs(pod):
                        found[6 if ":" in addr else 4].append(addr)
        return {ss.names[fam]: Elements(found[fam]) for fam in FAMILIES}

    def _remove_piece(self, m: Model, piece: Piece) -> None:
        for name in piece.sets:
            m.sets.pop(name, None)
            m.elements.pop(name, None)
        for name in piece.chains:
            m.chains.pop(name, None)

    # ------------------------------------------------------------ maps: a local address → its pod's group chain
    def groups_of(self, pod: PodInfo) -> tuple[list[Policy], list[Policy]]:
        """(policies isolating its ingress, its egress) — they all select it."""
        sel = [p for p in self.view.policies_in(pod.namespace) if selects(p, pod)]
        return sorted((p for p in sel if p.isolates_ingress), key=lambda p: p.key), \
            sorted((p for p in sel if p.isolates_egress), key=lambda p: p.key)

    def _local_addresses(self, namespace: str | None = None) -> set[str]:
        """Addresses of this node's pods (of one namespace): CNI's claims and the API's."""
        out = {str(ip) for key, lp in self.view.local.items() if namespace is None or key.split("/", 1)[0] == namespace
               for ip in lp.ips}
        out |= {a for pod in self.view.pods.values() if (namespace is None or pod.namespace == namespace)
                and self.view.is_local(pod) for a in self.view.pod_addrs(pod)}
        return out

    def _local_addresses_where(self, pred: Callable[[PodInfo], bool]) -> set[str]:
        """Addresses of this node's pods for which pred holds (a pod only CNI knows so far: always)."""
        out: set[str] = set()
        for key, lp in self.view.local.items():
            pod = self.view.pods.get(key)
            if pod is None or pred(pod):
                out |= {str(ip) for ip in lp.ips}
        out |= {a for pod in self.view.pods.values() if self.view.is_local(pod) and pred(pod)
                for a in self.view.pod_addrs(pod)}
        return out

    def _owner(self, ip: str, holders: list[PodInfo]) -> tuple[str, PodInfo | None]:
        """The local pod whose policy governs this address: the one CNI ADD gave it to, else a
        local pod the API says holds it.  ("", None): not a local pod's."""
        key = self.view.claimant(ip)
        if key is not None:
            return key, self.view.pods.get(key)
        local = sorted((p for p in holders if self.view.is_local(p)), key=lambda p: p.key)
        return (local[0].key, local[0]) if local else ("", None)

    def _map(self, m: Model, ips: set[str], holders: dict[str, list[PodInfo]] | None = None) -> None:
        holders = holders if holders is not None else self.view.holders(ips)
        for ip in ips:
            fam = 6 if ":" in ip else 4
            key, pod = self._owner(ip, holders.get(ip, []))
            chains = {"in": "", "eg": ""}
            if key in self.view.denied:
                chains = {"in": DENY_CHAIN, "eg": DENY_CHAIN}
            elif pod is not None:
                ingress, egress = self.groups_of(pod)
                for d, pols in (("in", ingress), ("eg", egress)):
                    chains[d] = self._group_chains(m, pod, d, pols)
            for d, chain in chains.items():
                if chain:
                    m.maps[f"{d}{fam}"][ip] = chain
                else:
                    m.maps[f"{d}{fam}"].pop(ip, None)

    def _group_chains(self, m: Model, pod: PodInfo, d: str, pols: list[Policy]) -> str:
        """The chain a local pod's address maps to in direction d ("" = no policy: accept):
            g…    the Admin tier's rules of the ClusterNetworkPolicies holding it, in precedence
                  order (Accept/Deny final, Pass → g…_n), then → g…_n
            g…_n  its NetworkPolicies (jump each, then drop) — or, none selecting it, the Baseline
                  tier's rules (Pass → accept), then accept
        Pods with the same policies share the chains (named by a hash of the policies)."""
        admin = self.view.cluster_policies_for(pod, "Admin", d) if self.view.cluster_policies else []
        baseline = self.view.cluster_policies_for(pod, "Baseline", d) if self.view.cluster_policies and not pols else []
        if not (admin or pols or baseline):
            return ""
        text = d + ",".join(p.key for p in pols)
        if admin or baseline:
            text += "|" + ",".join(cp.key for cp in admin) + "|" + ",".join(cp.key for cp in baseline)
        name = "g" + _h(text)
        second = f"{name}_n" if admin else name
        if pols:
            m.chains[second] = (*(f"jump {policy_id(p)}_{d}" for p in pols), "drop")
        else:
            m.chains[second] = (*(line.replace(PASS, "accept") for cp in baseline
                                  for line in self.pieces[cp.key].tiered[d]), "accept")
        if admin:
            m.chains[name] = (*(line.replace(PASS, f"goto {second}") for cp in admin
                                for line in self.pieces[cp.key].tiered[d]), f"goto {second}")
        return name

    def _drop_unused_groups(self, m: Model) -> None:
        used = {c for mp in m.maps.values() for c in mp.values()}
        used |= {f"{c}_n" for c in used}              # a tiered group's second chain (its goto target)
        for name in [n for n in m.chains if n.startswith("g") and n not in used]:
            del m.chains[name]

    # ------------------------------------------------------------ events
    def on_addresses(self, ips: set[str]) -> Model:
        """These addresses changed hands, labels or presence (a pod event, CNI ADD/DEL, a denial):
        their set memberships and map entries, recomputed from the pods that hold them now."""
        m = self.model.copy()
        holders = self.view.holders(ips)
        for piece in self.pieces.values():
            for ss in piece.selector_sets:
                for fam in FAMILIES:
                    mine = {ip for ip in ips if (":" in ip) == (fam == 6)}
                    if not mine:
                        continue
                    name = ss.names[fam]
                    inside = {ip for ip in mine if any(ss.has(p, self.view) for p in holders[ip])}
                    before = m.elements.get(name, NO_ELEMENTS)
                    # only these addresses can change: look at them, never at the whole set (a
                    # set can hold thousands of a big cluster's pods, and every set is visited),
                    # and change it in O(these) (Elements: no copy of the whole set per event)
                    if all((ip in before) == (ip in inside) for ip in mine):
                        continue
                    m.elements[name] = before.changed(mine - inside, inside)
            by_set: dict[str, list[NamedPortSet]] = {}       # a rule's named ports share its set
            for ns in piece.named_sets:
                for fam in FAMILIES:
                    by_set.setdefault(ns.names[fam], []).append(ns)
            for name, named in by_set.items():
                fam = 6 if name.endswith("6") else 4
                before = m.elements.get(name, NO_ELEMENTS)
                had = {e for e in before if e.split(" . ", 1)[0] in ips}
                now: set[str] = set()
                for ns in named:
                    for ip in ips:
                        for p in holders[ip]:
                            now |= {e for e in ns.elements(p, self.view, fam) if e.split(" . ", 1)[0] == ip}
                if now != had:
                    m.elements[name] = before.changed(had - now, now)
        self._map(m, ips, holders)
        self._drop_unused_groups(m)
        self.model = m
        return m

    def on_namespace(self, namespace: str) -> Model:
        """A namespace's labels changed: re-evaluate every pod against the namespace selectors."""
        m = self.model.copy()
        by_ns = pods_by_namespace(list(self.view.pods.values()))
        for piece in self.pieces.values():
            if any(getattr(pe, "namespaces", None) is not None for ss in piece.selector_sets for pe in ss.peers):
                for ss in piece.selector_sets:
                    m.elements.update(self._selector_elements(ss, by_ns))
        if self.view.cluster_policies:      # a subject chosen by namespace labels may now hold other pods
            self._map(m, self._local_addresses(namespace))
            self._drop_unused_groups(m)
        self.model = m
        return m

    def on_policy(self, key: str) -> Model:
        """A policy was added, changed or deleted (the view holds its new state, or none)."""
        m = self.model.copy()
        old = self.pieces.pop(key, None)
        if old is not None:
            self._remove_piece(m, old)
        new = self.view.policies.get(key)
        if new is not None:
            piece = compile_policy(new)
            self.pieces[key] = piece
            self._add_piece(m, piece, list(self.view.pods.values()))
        pol = new or (old.policy if old else None)
        if pol is not None:
            self._map(m, self._local_addresses(pol.namespace))
        self._drop_unused_groups(m)
        self.model = m
        return m

    def on_cluster_policy(self, key: str) -> Model:
        """A ClusterNetworkPolicy was added, changed or deleted: its sets and rules, then every
        local pod's chains (its subject may be any namespace's pods)."""
        m = self.model.copy()
        old = self.pieces.pop(key, None)
        if old is not None:
            self._remove_piece(m, old)
        new = self.view.cluster_policies.get(key)
        if new is not None:
            piece = compile_cluster_policy(new)
            self.pieces[key] = piece
            self._add_piece(m, piece, list(self.view.pods.values()))
        # only the local pods its old or new subject holds can change chains (a chain names its
        # policies, so no other pod's chain inlines this policy's rules)
        subjects = [cp.subject for cp in (old.policy if old else None, new) if isinstance(cp, ClusterPolicy)]
        self._map(m, self._local_addresses_where(
            lambda pod: not pod.host_network and any(sj.matches(pod.label_map, self.view.namespace_labels(pod.namespace))
                                                     for sj in subjects)))
        self._drop_unused_groups(m)
        self.model = m
        return m
