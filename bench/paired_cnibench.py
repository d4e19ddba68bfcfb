"""Two podnet configurations through the agent, paired: cnibench's --compare starts its
--host-daemon only for the first side, so two configurations that both need the agent are run
here as alternating single-round cnibench runs (A B, B A, …), each with its own agent, and the
per-round ratios B/A are reported (median [min..max]), as cnibench reports its own pairs.

Usage (root, from the checkout; `podnet install --bin-dir BIN` first):
  .venv/bin/python bench/paired_cnibench.py --bin BIN --a-label underlay --a-conf bench/configs/podnet-underlay.conflist \\
      --b-label routed --b-conf bench/configs/podnet-ptp-portmap.conflist --pods 50 --rounds 5 \\
      -- --runtime-config @PATH/k8s-chain.runtime.json --host-link mvmaster0 \\
      --host-setup "ip addr add 10.242.0.2/16 dev mvmaster0"
Arguments after -- go to every cnibench run.  CNIBENCH: the harness (default ../shared/bench/cnibench.py).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CNIBENCH = os.environ.get("CNIBENCH") or str(ROOT.parent / "shared" / "bench" / "cnibench.py")


def one_round(bin_dir: str, conf: str, pods: int, extra: list[str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        agent = f"{ROOT / '.venv/bin/podnet'} agent --socket /run/podnet/agent.sock --log-file {tmp}/agent.log"
        p = subprocess.run([sys.executable, CNIBENCH, "--cni-path", bin_dir, "--conf", conf, "--pods", str(pods),
                            "--rounds", "1", "--host-daemon", agent, "--host-daemon-ready", "/run/podnet/agent.sock",
                            "--json", out, *extra], capture_output=True, text=True)
        if p.returncode or not os.path.exists(out):
            raise SystemExit(f"cnibench failed on {conf}:\n{p.stdout[-2000:]}{p.stderr[-2000:]}")
        summary = next(iter(json.load(open(out))["targets"].values()))["summary"]
        problems = summary.get("problems") or []
        if problems:
            raise SystemExit(f"{conf}: {problems[:5]}")
        return {"add_p50": summary["add"]["lat_ms"]["p50"], "del_p50": summary["del"]["lat_ms"]["p50"],
                "add_ops": summary["add"]["ops_per_s"], "del_ops": summary["del"]["ops_per_s"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--a-label", required=True)
    ap.add_argument("--a-conf", required=True)
    ap.add_argument("--b-label", required=True)
    ap.add_argument("--b-conf", required=True)
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    a = ap.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    rows: dict[str, list[dict[str, float]]] = {a.a_label: [], a.b_label: []}
    for r in range(a.rounds):
        order = [(a.a_label, a.a_conf), (a.b_label, a.b_conf)]
        for label, conf in order if r % 2 == 0 else reversed(order):
            rows[label].append(one_round(a.bin, conf, a.pods, extra))
        print(f"round {r + 1}: " + " | ".join(f"{lb} ADD p50 {v[-1]['add_p50']:.1f} ms DEL p50 {v[-1]['del_p50']:.1f} ms"
                                               for lb, v in rows.items()), flush=True)
    for key in ("add_p50", "del_p50", "add_ops", "del_ops"):
        ratios = [b[key] / x[key] for x, b in zip(rows[a.a_label], rows[a.b_label], strict=True)]
        meds = {lb: statistics.median(v[key] for v in rows[lb]) for lb in rows}
        print(f"{key}: {a.a_label} {meds[a.a_label]:.2f}, {a.b_label} {meds[a.b_label]:.2f}; ratio {a.b_label}/"
              f"{a.a_label} median {statistics.median(ratios):.2f} [{min(ratios):.2f}..{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
