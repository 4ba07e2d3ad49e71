"""The ``eval`` benchmark (P6): is evaluation memory streaming? Peak RSS scoring 1,000 videos ÷ 100 (goal <= 1.2).

Each size runs in a fresh process (``python -m deepfake_ssat.bench.eval ROOT``: peak RSS is a per-process
high-water mark) over a synthetic extraction: scan the manifests, score every clip with a tiny VideoMAE,
aggregate per video and compute the metrics, as ``dfssat-eval-ff`` does.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..data.faceclips import FaceClipDataset, scan_extraction
from ..eval.ffpp import score_dataset
from ..models import create_model
from .header import run_header


def measure(root: Path, batch_size: int = 16) -> dict[str, Any]:
    """Score every video under ``root`` in this process; returns counts, seconds and peak RSS (MiB)."""
    torch.manual_seed(0)
    encoder = create_model("videomae_test", num_classes=2)
    start = time.perf_counter()
    videos, _ = scan_extraction(root, 8, 1, 32)
    dataset = FaceClipDataset(videos, 32, 8, train=False, eval_clips=2)
    metrics = score_dataset(encoder, dataset, torch.device("cpu"), batch_size)
    result = metrics.compute()
    return {"videos": result["video"]["n"], "clips": len(metrics), "seconds": round(time.perf_counter() - start, 2),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_eval_benchmark(small: int = 100, large: int = 1000, frames: int = 16,
                       command: str | None = None) -> dict[str, Any]:
    """Write two synthetic extractions and measure each in its own process."""
    from ..synthetic.extractions import write_synthetic_extraction  # here: the measured processes need not import faces/

    runs = {}
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        for n in (small, large):
            root = Path(tmp) / str(n)
            write_synthetic_extraction(root, n, frames, crop_size=32)
            proc = subprocess.run([sys.executable, "-m", "deepfake_ssat.bench.eval", str(root)],
                                  capture_output=True, text=True, check=True)
            runs[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    ratio = runs[large]["peak_rss_mib"] / runs[small]["peak_rss_mib"]
    return {**run_header("eval", command),
            "setup": {"crops_per_video": frames, "crop_size": 32, "model": "videomae_test", "eval_clips": 2},
            "runs": {str(k): v for k, v in runs.items()},
            f"rss_ratio_{large}_over_{small}": round(ratio, 3),
            "goal": {f"rss_ratio_{large}_over_{small}": "<= 1.2"}, "met": ratio <= 1.2}


def format_eval(result: dict[str, Any]) -> str:
    """One-line text summary of :func:`run_eval_benchmark`."""
    key = next(k for k in result if k.startswith("rss_ratio_"))
    runs = result["runs"]
    return (f"P6 {key} = {result[key]:.3f} (goal <= 1.2); " +
            ", ".join(f"{n} videos: {r['clips']} clips, peak {r['peak_rss_mib']:.0f} MiB, {r['seconds']:.1f} s"
                      for n, r in runs.items()))


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]))))
