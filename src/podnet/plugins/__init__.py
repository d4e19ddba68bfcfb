"""Every plugin type podnet serves: an explicit map, no import side effects."""
from __future__ import annotations

from ..cni.skel import Plugin
from . import bridge, host_local, loopback, static

REGISTRY: dict[str, Plugin] = {
    "bridge": bridge.PLUGIN,
    "host-local": host_local.PLUGIN,
    "static": static.PLUGIN,
    "loopback": loopback.PLUGIN,
}
