"""Link steps shared by plugins: veth pairs into a pod, bridges, random host names."""
from __future__ import annotations

import contextlib
import dataclasses
import os

from .errors import LinkExists, NetError
from .rtnl import Link, Rtnl


def random_veth_name(prefix: str = "veth") -> str:
    """'veth' + 8 hex digits, as the reference plugins name host ends (or another prefix)."""
    return prefix + os.urandom(4).hex()


def random_mac() -> str:
    """A random unicast, locally administered MAC."""
    b = bytearray(os.urandom(6))
    b[0] = (b[0] & 0xFC) | 0x02
    return ":".join(f"{x:02x}" for x in b)


# Link groups podnet uses only for links it is deleting this instant (see delete_together).
TEARDOWN_GROUPS = (0x70000000, 0x7FFFFFFF)


def delete_together(host: Rtnl, indices: list[int]) -> None:
    """Delete several links of this netns in one kernel batch.

    Each link deletion waits for an RCU grace period in the kernel (~16 ms here), one at a time;
    links deleted by group share one wait, so a pod's veth and ifb go for the price of one.  The
    group is random in TEARDOWN_GROUPS, a range kept for this: the only links ever in such a group
    are links about to be deleted, so even two concurrent teardowns drawing the same number
    (1 in 2^28) only delete each other's doomed links a moment early.
    """
    if len(indices) < 2:
        for index in indices:
            host.del_link(index)
        return
    lo, hi = TEARDOWN_GROUPS
    group = lo + int.from_bytes(os.urandom(4), "big") % (hi - lo + 1)
    for index in indices:
        host.set_link(index, group=group)
    host.del_group(group)


def ensure_bridge(host: Rtnl, name: str, mtu: int = 0, vlan_filtering: bool = False) -> Link:
    """Create the bridge if missing (a concurrent creator is fine) and bring it up.

    A bridge we create gets a fixed MAC, so it does not change as ports come and go.
    """
    br = host.link(name)
    if br is None:
        try:
            host.add_bridge(name, mtu=mtu, vlan_filtering=vlan_filtering, mac=random_mac())
        except LinkExists:
            pass
        br = host.require_link(name)
    if br.kind != "bridge":
        raise NetError(f"{name!r} already exists but is not a bridge")
    if not br.up:
        host.set_link(br.index, state="up")
        br = host.require_link(name)
    return br


def make_veth_into(host: Rtnl, pod: Rtnl, pod_netns_fd: int, ifname: str, mtu: int = 0,
                   mac: str = "", master: int = 0, prefix: str = "veth") -> tuple[Link, Link]:
    """A veth pair, both ends up: the host end (random name, MAC, optionally on `master`)
    here, the `ifname` end inside the pod.

    One netlink message makes both ends in their netns, so the kernel makes both or
    neither; the host end is described from what we asked for, saving a lookup.
    Raises LinkExists when `ifname` already exists in the pod.
    """
    for _ in range(5):
        name, host_mac = random_veth_name(prefix), random_mac()
        try:
            host.add_veth(name, ifname, pod_netns_fd, mtu=mtu, peer_mac=mac, mac=host_mac, master=master, up=True)
        except LinkExists:
            if pod.link(ifname) is not None:
                raise
            continue  # host-side name collision: try another
        cv = pod.require_link(ifname)
        hv = Link(index=cv.link, name=name, kind="veth", mac=host_mac, mtu=cv.mtu, up=True, master=master,
                  alias="", link=cv.index, promisc=False)
        return hv, cv
    raise NetError("could not find a free host veth name")


NETNS_DIRS = ("/run/netns", "/var/run/netns")


def peer_netns_path(host: Rtnl, veth: Link) -> str | None:
    """The netns path (under NETNS_DIRS) of a host veth's peer: the netns whose id, as this
    netns numbers it, is the veth's IFLA_LINK_NETNSID.  None: no such named netns."""
    nsid = host.peer_netnsid(veth.index)
    if nsid is None:
        return None
    for d in NETNS_DIRS:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for name in names:
            path = os.path.join(d, name)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if host.netnsid(fd) == nsid:
                    return path
            finally:
                os.close(fd)
    return None


def host_peer_of(host: Rtnl, pod_link: Link) -> Link | None:
    """The host end of a pod's veth: IFLA_LINK of the pod end is the host ifindex."""
    if not pod_link.link:
        return None
    peer = host.link_by_index(pod_link.link)
    return peer if peer is not None and peer.kind == "veth" else None


def temp_name() -> str:
    """A name no user picks, for a link between creation and its final rename."""
    return "pnt" + os.urandom(4).hex()


def create_in_pod(where: Rtnl, pod: Rtnl, pod_netns_fd: int, ifname: str, kind: str, **attrs: object) -> Link:
    """Create a `kind` link under a temporary name straight into the pod, then rename it.

    `where` is the netns that holds the lower device (the host, or the pod itself for
    linkInContainer).  The temporary name keeps a clash with a host name from failing
    the create; a clash with `ifname` in the pod raises LinkExists and leaves nothing.
    """
    tmp = temp_name()
    where.add_link(tmp, kind, None if where is pod else pod_netns_fd, **attrs)
    made = pod.require_link(tmp)
    try:
        pod.set_link(made.index, ifname=ifname)
    except NetError:
        with contextlib.suppress(NetError):
            pod.del_link(made.index)
        raise
    return dataclasses.replace(made, name=ifname)


def move_into_pod(host: Rtnl, pod: Rtnl, pod_netns_fd: int, dev: Link, ifname: str) -> Link:
    """Move a host device into the pod as `ifname`, its original name kept in the alias
    (how DEL finds the name to give back).  On a failed rename it goes back home."""
    host.set_link(dev.index, state="down")
    host.set_link(dev.index, ifalias=dev.name)
    host.set_link(dev.index, net_ns_fd=pod_netns_fd)
    moved = pod.require_link(dev.name)
    try:
        pod.set_link(moved.index, ifname=ifname)
    except NetError:
        move_out_of_pod(pod, moved, host_netns_fd=None)
        raise
    pod.set_link(moved.index, state="up")
    return pod.require_link(ifname)


def move_out_of_pod(pod: Rtnl, dev: Link, host_netns_fd: int | None) -> None:
    """Give a device back to the host under the name saved in its alias.

    Renamed inside the pod first (a name free there), then moved: the host may hold an
    `eth0` of its own.  host_netns_fd None means the netns of the calling thread.
    """
    pod.set_link(dev.index, state="down")
    original = dev.alias or dev.name
    if dev.name != original:
        pod.set_link(dev.index, ifname=original)
    if host_netns_fd is None:
        with open("/proc/thread-self/ns/net", "rb") as f:
            pod.set_link(dev.index, net_ns_fd=f.fileno())
    else:
        pod.set_link(dev.index, net_ns_fd=host_netns_fd)


SYS = "/sys"


def names_at_pci(pci: str) -> set[str]:
    """Network interface names sysfs lists under a PCI address (0000: added when missing)."""
    full = pci if pci.count(":") == 2 else "0000:" + pci
    try:
        return set(os.listdir(f"{SYS}/bus/pci/devices/{full}/net"))
    except OSError:
        return set()


def names_under(kernelpath: str) -> set[str]:
    """Interface names whose sysfs device lives below `kernelpath` (/sys/devices/…)."""
    root = kernelpath.rstrip("/") + "/"
    return {name for name in os.listdir(f"{SYS}/class/net")
            if os.path.realpath(f"{SYS}/class/net/{name}").startswith(root)}
