"""The kernel's neighbour (ARP/NDP) table limits, sized for a lab of many nodes in one kernel.

Each family has one neighbour table for the whole kernel: every netns's entries count against
gc_thresh3, and the limits can only be set from the initial netns.  Real nodes each have their
own kernel; the lab's twenty nodes share this one, so its pods' entries add up — two per pod at
least (the pod's for its gateway, the node's for the pod), more when pods on one bridge talk to
each other.  Past gc_thresh3 (1024 by default) the kernel refuses new entries ("neighbour table
overflow") and packets to unresolved neighbours are dropped: a 1000-pod benchmark in one netns
lost every ping from pod 512 on (2 × 512 = 1024), and the lab's 1000-pod demo needs ~2000
entries before it probes anything.  So the lab raises the limits
to fit its size (never lowers them) and puts the old values back when it goes, if they are still
the ones it set.
"""
from __future__ import annotations

import contextlib

KEYS = tuple(f"/proc/sys/net/{fam}/neigh/default/gc_thresh{n}" for fam in ("ipv4", "ipv6") for n in (1, 2, 3))


def _read(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _write(path: str, value: int) -> None:
    with open(path, "w") as f:
        f.write(f"{value}\n")


def wanted(entries: int) -> dict[int, int]:
    """gc_thresh1/2/3 for `entries` expected entries: thresh2 (where the kernel starts pruning
    hard) twice the need, thresh3 (the hard cap) four times, thresh1 (no pruning below) the need."""
    return {1: entries, 2: 2 * entries, 3: 4 * entries}


class NeighbourLimits:
    """Raise-only sizing of the shared neighbour tables, undone by restore()."""

    def __init__(self) -> None:
        self.original: dict[str, int] = {}
        self.set_to: dict[str, int] = {}

    def ensure(self, entries: int) -> bool:
        """Make room for `entries` neighbour entries per family; True when a limit was raised.
        Without write access (not the initial netns, read-only /proc) nothing changes."""
        raised = False
        for path in KEYS:
            want = wanted(entries)[int(path[-1])]
            try:
                have = _read(path)
                if have >= want:
                    continue
                self.original.setdefault(path, have)
                _write(path, want)
            except OSError:
                continue
            self.set_to[path] = want
            raised = True
        return raised

    def restore(self) -> None:
        for path, value in self.original.items():
            with contextlib.suppress(OSError):
                if _read(path) == self.set_to.get(path):      # nobody changed it since
                    _write(path, value)
        self.original.clear()
        self.set_to.clear()
