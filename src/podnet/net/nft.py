"""nftables access: one atomic transaction per call, via libnftables in-process.

Debian's python3-nftables binds libnftables.so.1; it lives outside our venv, so it is
loaded by file path.  Without it we fall back to one `nft -f -` process per call.
Scripts are built only from validated values (addresses, ints, hex names): callers
must never splice raw config strings in.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .errors import NftError

_LIB_PATH = "/usr/lib/python3/dist-packages/nftables/nftables.py"
_lock = threading.Lock()
_module: Any = None
_ctx: Any = None               # the context of the netns it was made in (_ctx_netns)
_ctx_netns = 0


def _library() -> Any:
    """Debian's nftables binding, loaded once (False: not installed)."""
    global _module
    if _module is None:
        try:
            spec = importlib.util.spec_from_file_location("_podnet_libnftables", _LIB_PATH)
            if spec is None or spec.loader is None:
                raise ImportError(_LIB_PATH)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            _module = mod
        except (ImportError, OSError, FileNotFoundError):
            _module = False
    return _module


def _current_netns() -> int:
    """The calling thread's network namespace (threads enter pods' namespaces on their own)."""
    import os
    return os.stat("/proc/thread-self/ns/net").st_ino


def _process_netns() -> int:
    """The process's own netns (its main thread's), the only one whose context is kept."""
    import os
    return os.stat("/proc/self/ns/net").st_ino


def _context() -> Any:
    """A libnftables context for the calling thread's netns.  A context's netlink socket stays in
    the netns it was opened in, so the cached one serves only that netns; another netns (a pod's:
    underlay NetworkPolicy, the leg's reply routing) gets a context of its own, freed after use, so
    no pod's namespace is held alive by a cached socket."""
    global _ctx, _ctx_netns
    mod = _library()
    if not mod:
        return False
    here = _current_netns()
    if _ctx is None and here == _process_netns():
        _ctx, _ctx_netns = mod.Nftables(), here
        _ctx.set_json_output(False)
    if _ctx is not None and here == _ctx_netns:
        return _ctx
    ctx = mod.Nftables()
    ctx.set_json_output(False)
    return ctx


_pending = threading.local()      # .script: writes held for one_transaction(), per thread


@contextlib.contextmanager
def one_transaction() -> Iterator[None]:
    """Every write (`run`) in this thread inside the block becomes part of ONE nft transaction,
    run when the block ends without an error — all of it or none of it, and one netlink round
    trip instead of one per writer (the pod plugin: masquerade and hostPort mappings together).
    Reads (`list_json`) and `run_ignoring_missing` still run at once, and so does a write made
    while the thread stands in another netns (a pod's); an error inside the block drops the held
    writes.  Nested blocks join the outer one."""
    if getattr(_pending, "script", None) is not None:
        yield
        return
    _pending.script, _pending.after, _pending.netns = [], [], _current_netns()
    try:
        yield
        script, after = "".join(_pending.script), _pending.after
    finally:
        _pending.script = _pending.after = None
    if script:
        _execute(script, False)
    for fn in after:
        fn()


def after_commit(fn: Callable[[], None]) -> None:
    """Call `fn` once this thread's writes are in the kernel: at once, or inside one_transaction()
    when its transaction has been committed (never when it fails)."""
    after = getattr(_pending, "after", None)
    if after is None:
        fn()
    else:
        after.append(fn)


def query(script: str) -> str:
    """Run a read-only script (`get element …`) at once, even inside one_transaction(); its text
    output.  NftError when an object is missing."""
    return _execute(script, False)


def run_now(script: str) -> str:
    """Run a write at once, as its own transaction, even inside one_transaction(): for writes that
    must be in the kernel before the caller goes on (a pod's NetworkPolicy, programmed before its
    addresses are on its interface, must not wait for the end of the pod's ADD)."""
    return _execute(script, False)


def run(script: str, json_output: bool = False) -> str:
    """Run an nft script as one transaction (or, inside one_transaction(), hold it for the
    block's); raise NftError with nft's message."""
    held = getattr(_pending, "script", None)
    # a write in another netns (a pod's, entered meanwhile) is not this transaction's: at once, there
    if held is not None and not json_output and _current_netns() == _pending.netns:
        held.append(script if script.endswith("\n") else script + "\n")
        return ""
    return _execute(script, json_output)


def _execute(script: str, json_output: bool) -> str:
    with _lock:
        ctx = _context()
        if ctx:
            ctx.set_json_output(json_output)
            rc, out, err = ctx.cmd(script)
        else:
            nft = shutil.which("nft") or "/usr/sbin/nft"
            argv = [nft, "-j", "-f", "-"] if json_output else [nft, "-f", "-"]
            proc = subprocess.run(argv, input=script, capture_output=True, text=True)
            rc, out, err = proc.returncode, proc.stdout, proc.stderr
    if rc != 0:
        raise NftError(err.strip() or f"nft failed ({rc})")
    return str(out)


def run_ignoring_missing(script: str) -> bool:
    """Run (at once, even inside one_transaction()), treating 'No such file or directory'
    (already gone) as success."""
    try:
        _execute(script, False)
        return True
    except NftError as e:
        if "No such file or directory" in str(e):
            return False
        raise


def list_json(what: str) -> list[dict[str, Any]]:
    """`nft -j list <what>` as its list of objects; [] when the object does not exist."""
    try:
        out = run(f"list {what}", json_output=True)
    except NftError as e:
        if "No such file or directory" in str(e):
            return []
        raise
    return list(json.loads(out or '{"nftables": []}').get("nftables", []))


def available() -> bool:
    return bool(_context()) or shutil.which("nft") is not None


def has_library() -> bool:
    """Whether libnftables (python3-nftables) is loaded rather than the `nft` fallback."""
    return bool(_context())


# ------------------------------------------------------------ element owners
# Elements podnet adds for a pod carry the comment "<network> <containerID>", so DEL and GC find
# them.  nftables keeps at most 128 bytes of comment: a longer pair is written as hashes of both
# ("#<h(network)> #<h(containerID)>"), still unique and still matchable, never truncated into
# another pod's name.
COMMENT_MAX = 127


@functools.lru_cache(maxsize=4096)
def owner_hash(text: str) -> str:
    """32 hex digits of SHA-256 (cached: GC and DEL check many elements of one network)."""
    import hashlib
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)
def owner_tag(network: str, container_id: str) -> str:
    plain = f"{network} {container_id}"
    return plain if len(plain.encode("utf-8", "surrogateescape")) <= COMMENT_MAX \
        else f"#{owner_hash(network)} #{owner_hash(container_id)}"


def owned(comment: str, network: str, container_id: str | None = None, keep: set[str] | None = None) -> bool:
    """Whether an element's comment is `network`'s — and then, with container_id, that container's;
    without it, a container not in `keep` (GC)."""
    net, _, cid = comment.partition(" ")
    if net not in (network, f"#{owner_hash(network)}"):
        return False
    if container_id is not None:
        return comment == owner_tag(network, container_id)
    return cid not in {k for c in (keep or set()) for k in (c, f"#{owner_hash(c)}")}
