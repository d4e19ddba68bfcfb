"""A busy machine for the continuity tests (issue 34): every core kept busy by a CPU hog at normal
priority for the test's duration — real nodes are busy, and "no packet lost across a restart" must
hold there, not only on an idle machine."""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

HOG = "while True: pass"


@contextlib.contextmanager
def cpu_saturated(extra: int = 1) -> Iterator[list[int]]:
    """One busy process per core (+ `extra`), started before the block and stopped after it, on
    failure too; yields their pids."""
    procs = [subprocess.Popen(["/usr/bin/python3", "-c", HOG], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range((os.cpu_count() or 1) + extra)]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def load_conditions() -> list[str]:
    """The conditions a continuity test runs under: an idle machine, and a saturated one."""
    return ["idle", "loaded"]


@contextlib.contextmanager
def condition(which: str) -> Iterator[None]:
    if which == "loaded":
        with cpu_saturated():
            yield
    else:
        yield
