"""What a plugin can say went wrong, as types; which CNI code each becomes is decided in one
table at the edge (dispatch/codes.py), not here.  Config errors are `cni.errors.config_error`
(the contract's code 7, naming the field)."""
from __future__ import annotations


class PluginError(Exception):
    """Root of failures a plugin reports itself (rather than the kernel or the store)."""


class CheckFailed(PluginError):
    """CHECK: the pod's network is not what ADD made (an address, route, rule or qdisc is gone
    or different)."""


class NotAvailable(PluginError):
    """STATUS: this node cannot serve ADD now (nftables missing, the store unreachable)."""


class TryAgain(PluginError):
    """A transient condition: the runtime should retry the request later."""


class BadDelegateResult(PluginError):
    """A delegated plugin (IPAM) answered without what the caller needs."""


class PortInUse(PluginError):
    """A host port is already mapped to another pod."""
