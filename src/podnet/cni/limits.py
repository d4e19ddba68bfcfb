"""How large a request and a result may be (the numbers are in wire.py), so that whatever ADD
accepts, the DEL and CHECK a runtime sends afterwards — the same config with the ADD's result as
`prevResult` — are accepted too.  A pod whose DEL is refused can never be deleted: the runtime
retries DEL forever.

The invariant: ADD's config without its prevResult ≤ MAX_CONFIG; every result ≤ MAX_RESULT as a
runtime may re-encode it; so DEL/CHECK ≤ MAX_CONFIG + MAX_RESULT + slack = MAX_STDIN, which every
command accepts.  Checks cost nothing for ordinary sizes (a few hundred bytes).
"""
from __future__ import annotations

import json
from typing import Any

from ..wire import MAX_CONFIG, MAX_RESULT, MAX_STDIN
from .errors import DECODE_FAILURE, INVALID_CONFIG, CNIError

# Go's encoding/json (libcni, containerd, CRI-O) writes <, > and & as \u003c, \u003e, \u0026
_GO_ESCAPED = "<>&"
_PREV_KEY = ',"prevResult":'


def go_encoded_size(doc: Any) -> int:
    """An upper bound of the bytes a runtime's JSON encoder writes for `doc`: compact, non-ASCII
    as \\uXXXX (Go writes UTF-8, never longer), and 5 more bytes for each character Go escapes."""
    text = json.dumps(doc, separators=(",", ":"))
    return len(text) + 5 * sum(text.count(c) for c in _GO_ESCAPED)


def check_stdin(stdin: bytes) -> None:
    """Any command: the largest config a runtime can send after a successful ADD."""
    if len(stdin) > MAX_STDIN:
        raise CNIError(DECODE_FAILURE, f"network config exceeds the {MAX_STDIN}-byte limit")


def check_config(command: str, stdin: bytes, conf: dict[str, Any]) -> None:
    """ADD, STATUS, GC: the config, its prevResult aside, within MAX_CONFIG (only a config that
    is already over it needs its prevResult measured)."""
    if command in ("DEL", "CHECK") or len(stdin) <= MAX_CONFIG:
        return
    prev = conf.get("prevResult")
    own = len(stdin) - (len(json.dumps(prev, separators=(",", ":"))) + len(_PREV_KEY) if prev is not None else 0)
    if own > MAX_CONFIG:
        raise CNIError(DECODE_FAILURE, f"network config exceeds the {MAX_CONFIG}-byte limit"
                                       f"{' (its prevResult aside)' if prev is not None else ''}")


def result_overflow(body: Any, rendered: bytes) -> int:
    """0 when the result fits in a later prevResult, else its size as a runtime may encode it."""
    if len(rendered) * 6 <= MAX_RESULT:       # even if every byte were escaped by Go
        return 0
    size = go_encoded_size(body)
    return size if size > MAX_RESULT else 0


def result_too_large(size: int) -> CNIError:
    return CNIError(INVALID_CONFIG, f"the result would take {size} bytes, over the {MAX_RESULT}-byte limit of "
                                    "the prevResult a runtime sends back with DEL and CHECK: give fewer "
                                    "addresses, routes or DNS entries")
