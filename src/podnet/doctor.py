"""`podnet doctor`: what a node needs for podnet, checked one item at a time.

Each check answers with a level (ok / warn / fail) and one line a person can act on;
the exit status is non-zero when any check fails, so scripts and probes can use it.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .wire import DEFAULT_SOCKET, http_get_unix

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    detail: str


def check_socket(path: str) -> Iterator[Finding]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        yield Finding("agent socket", WARN, f"{path} does not exist: launchers run plugins in-process (slower)")
        return
    if not stat.S_ISSOCK(st.st_mode):
        yield Finding("agent socket", FAIL, f"{path} exists but is not a socket")
        return
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 or st.st_uid != 0:
        yield Finding("agent socket", FAIL, f"{path} is mode {mode:04o} owner uid {st.st_uid}; want 0600 root")
    else:
        yield Finding("agent socket", OK, f"{path} mode {mode:04o}, owner root")
    try:
        status, body = http_get_unix(path, "/healthz")
    except OSError as e:
        yield Finding("agent", FAIL, f"socket {path} does not answer ({e}): a stale socket? restart `podnet agent`")
        return
    if status == 200:
        yield Finding("agent", OK, f"answers /healthz: {body.decode(errors='replace').strip()}")
    else:
        yield Finding("agent", FAIL, f"/healthz answered HTTP {status} (403 = this shell is in another netns)")
        return
    try:
        status, body = http_get_unix(path, "/readyz")
    except OSError:
        return
    text = body.decode(errors="replace").strip()
    try:
        degraded = str(json.loads(text).get("degraded", ""))
    except (ValueError, AttributeError):
        degraded = ""
    if status == 200 and degraded:
        yield Finding("node network", WARN, f"ready, but degraded: {degraded} — routes already programmed stay; "
                                            "changes elsewhere in the cluster are not followed")
    elif status == 200:
        yield Finding("node network", OK, "ready (/readyz)")
    else:
        yield Finding("node network", FAIL, f"not ready: {text} — CNI STATUS answers 50 and no conflist is "
                                            "written until the agent has joined and routed")


def launcher_interpreter(path: str) -> str:
    with open(path, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    return first[2:].split()[0] if first.startswith("#!") else ""


def check_launchers(bin_dir: str) -> Iterator[Finding]:
    from .install import TYPES, launcher_name
    missing = [t for t in TYPES if not os.access(os.path.join(bin_dir, launcher_name(t)), os.X_OK)]
    if missing:
        yield Finding("launchers", FAIL, f"missing in {bin_dir}: {', '.join(launcher_name(t) for t in missing)}"
                      " (run `podnet install --bin-dir " + bin_dir + "`)")
    present = [t for t in TYPES if t not in missing]
    if not present:
        return
    first = os.path.join(bin_dir, launcher_name(present[0]))
    interp = launcher_interpreter(first)
    if not interp or not os.access(interp, os.X_OK):
        yield Finding("launcher interpreter", FAIL, f"{first} names {interp or 'no interpreter'}, not executable")
        return
    from .install import MIN_PYTHON, host_python
    try:
        version = host_python(interp)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        yield Finding("launcher interpreter", FAIL, f"{interp} did not run: {e}")
        return
    if version < MIN_PYTHON:
        yield Finding("launcher interpreter", FAIL, f"{interp} is Python {version[0]}.{version[1]}; podnet needs "
                      f"{MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer")
        return
    try:
        out = subprocess.run([first], input=b"", capture_output=True, timeout=10,
                             env={"CNI_COMMAND": "VERSION", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as e:
        yield Finding("launcher interpreter", FAIL, f"{first} did not run: {e}")
        return
    level = OK if out.returncode == 0 and b"supportedVersions" in out.stdout else FAIL
    yield Finding("launcher interpreter", level,
                  f"{interp}, Python {version[0]}.{version[1]} (VERSION via {os.path.basename(first)}: "
                  f"exit {out.returncode})")


def check_tools() -> Iterator[Finding]:
    nft = shutil.which("nft") or next((p for p in ("/usr/sbin/nft", "/sbin/nft") if os.access(p, os.X_OK)), "")
    yield Finding("nft", OK if nft else FAIL, nft or "not found: apt install nftables")
    try:
        from .net import nft as nftlib
        yield Finding("libnftables", OK if nftlib.has_library() else WARN,
                      "python3-nftables loaded" if nftlib.has_library() else "not found; falling back to `nft -f -`")
    except Exception as e:  # noqa: BLE001 - a doctor reports, it does not crash
        yield Finding("libnftables", WARN, str(e))
    ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/bin/ip") if os.access(p, os.X_OK)), "")
    yield Finding("iproute2", OK if ip else WARN, ip or "`ip` not found (not needed by podnet, but for debugging)")
    try:
        from .net.rtnl import library_version
        yield Finding("pyroute2", OK, f"version {library_version()}")
    except ImportError as e:
        yield Finding("pyroute2", FAIL, f"cannot import: {e}")
    fwd = "/proc/sys/net/ipv4/ip_forward"
    try:
        with open(fwd) as f:
            on = f.read().strip() == "1"
        yield Finding("ip_forward", OK if on else WARN,
                      "on" if on else "off: podnet-bridge with isGateway turns it on at the first ADD")
    except OSError as e:
        yield Finding("ip_forward", WARN, str(e))


def _backend_status(path: str, endpoint: str) -> dict[str, Any] | None:
    """What the agent says of its routing backend's daemon (GET /wireguard, /bgp); None when it
    does not answer or runs without that backend."""
    try:
        status, body = http_get_unix(path, endpoint)
    except OSError:
        return None
    return dict(json.loads(body)) if status == 200 else None


HANDSHAKE_STALE = 180.0    # WireGuard rekeys every 2 min while traffic (podnet's 25 s keepalive) flows


def check_wireguard(path: str) -> Iterator[Finding]:
    """With --encryption wireguard: every peer's last handshake is recent, and no node is left
    unreachable because one side encrypts and the other does not."""
    doc = _backend_status(path, "/wireguard")
    if doc is None:
        return                       # encryption off (or an agent from before it): nothing to check
    if doc.get("error"):
        yield Finding("wireguard", FAIL, f"{doc['device']} ({doc['implementation']}): {doc['error']}")
        return
    yield Finding("wireguard", OK, f"{doc['device']} by {doc['implementation']} (pid {doc.get('pid') or '?'}), "
                                   f"port {doc['listen_port']}, {len(doc['peers'])} peers")
    for p in doc["peers"]:
        who = f"peer {p['node'] or p['public_key'][:8]} ({p['endpoint']})"
        age = p["handshake_age"]
        if age is None:
            yield Finding("wireguard peer", WARN, f"{who}: no handshake yet — pod traffic to it is not flowing")
        elif age > HANDSHAKE_STALE:
            yield Finding("wireguard peer", WARN, f"{who}: last handshake {age:.0f} s ago (> {HANDSHAKE_STALE:.0f} s): "
                                                  "is UDP to its port blocked, or its key stale?")
        else:
            yield Finding("wireguard peer", OK, f"{who}: handshake {age:.0f} s ago")
    for node, why in sorted(doc.get("refused", {}).items()):
        yield Finding("wireguard peer", FAIL, f"{node}: {why}")


def check_bgp(path: str) -> Iterator[Finding]:
    """With routing bgp: BIRD answers, took the last rendered configuration, and every session
    is Established (one that is not says why: BIRD's own words, e.g. "Active  Socket: Connection
    refused" or "Error: Bad peer AS")."""
    doc = _backend_status(path, "/bgp")
    if doc is None:
        return
    if doc.get("error"):
        yield Finding("bgp", FAIL, f"BIRD does not answer: {doc['error']} — the agent restarts it on its next pass")
        return
    yield Finding("bgp", OK, f"BIRD (pid {doc.get('pid') or '?'}): {doc['bird']}; AS {doc['as']}"
                             f"{', route reflector' if doc.get('route_reflector') else ''}; {len(doc['sessions'])} sessions")
    if doc.get("config_error"):
        yield Finding("bgp config", FAIL, f"BIRD refused the latest rendered configuration (the previous one still "
                                          f"runs): {doc['config_error']}")
    for sess in doc["sessions"]:
        if sess["established"]:
            yield Finding("bgp session", OK, f"{sess['peer']}: Established since {sess['since']}")
        else:
            yield Finding("bgp session", FAIL, f"{sess['peer']}: not established: {sess['state']} {sess['info']}".strip())


def run_checks(socket_path: str = DEFAULT_SOCKET, bin_dir: str = "/opt/cni/bin") -> list[Finding]:
    groups: list[Callable[[], Iterator[Finding]]] = [
        lambda: check_socket(socket_path), lambda: check_wireguard(socket_path), lambda: check_bgp(socket_path),
        lambda: check_launchers(bin_dir), check_tools]
    return [f for g in groups for f in g()]


def render(findings: list[Finding]) -> str:
    width = max(len(f.check) for f in findings)
    return "\n".join(f"[{f.level:4}] {f.check:<{width}}  {f.detail}" for f in findings)


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.level == FAIL for f in findings) else 0
