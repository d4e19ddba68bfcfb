"""The agent's interpreter switch interval: the interpreter's default unless the bench's A/B asks
for another through PODNET_SWITCH_INTERVAL_MS; nonsense falls back, never below 50 µs."""
from __future__ import annotations

import pytest

from podnet.agent.node import SWITCH_INTERVAL_MS, switch_interval


@pytest.mark.parametrize(("env", "want"), [(None, SWITCH_INTERVAL_MS / 1000), ("0.5", 0.0005), ("x", 0.005),
                                           ("0", 0.00005), ("-3", 0.00005)])
def test_switch_interval(monkeypatch: pytest.MonkeyPatch, env: str | None, want: float) -> None:
    if env is None:
        monkeypatch.delenv("PODNET_SWITCH_INTERVAL_MS", raising=False)
    else:
        monkeypatch.setenv("PODNET_SWITCH_INTERVAL_MS", env)
    assert switch_interval() == pytest.approx(want)
