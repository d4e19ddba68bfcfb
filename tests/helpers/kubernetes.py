"""Whether the Kubernetes components the lab runs are built (scripts/k8s-build.sh), and the mark
that skips a test without them — except under CI, where a missing build is a failure."""
from __future__ import annotations

import os

import pytest

from podnet.lab.control_plane import ControlPlaneError, k8s_bin_dir


def have_kubernetes() -> str:
    """'' when built, else why not."""
    try:
        k8s_bin_dir()
        return ""
    except ControlPlaneError as e:
        return str(e)


needs_kubernetes = pytest.mark.skipif(bool(have_kubernetes()) and not os.environ.get("CI"), reason=have_kubernetes())
