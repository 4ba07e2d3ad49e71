"""``make demo``: the whole video pipeline on embedded data, on a CPU, in a few minutes.

No DFDC or FF++ video can ship, so :func:`build_demo_data` writes small DFDC- and FF++-layout datasets and
:func:`run_video_demo` runs every stage on them. The numbers say the pipeline works end to end; they are not
a benchmark of deepfake detection.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..synthetic.layouts import VideoSpec, write_dfdc, write_ffpp



def build_demo_data(data: Path, quick: bool = False) -> dict[str, Path]:
    """Write the DFDC / FF++ layouts under ``data`` (skipped when already complete); returns their roots.

    Real-codec videos of a real face (``skimage.data.astronaut()``) with four genuinely different
    synthetic manipulations (:mod:`deepfake_ssat.synthetic.scenes`): a face swap with matplotlib's
    ``grace_hopper.jpg``, a blurrier autoencoder-like swap, a mouth expression warp and a re-textured mouth.
    """
    spec = VideoSpec(num_frames=12 if quick else 16)
    roots = {"dfdc": data / "dfdc", "ffpp": data / "ffpp"}
    if not (data / ".complete").is_file():
        write_dfdc(roots["dfdc"], num_parts=3 if quick else 6, originals_per_part=2 if quick else 4,
                   fakes_per_original=1 if quick else 2, spec=spec)
        write_ffpp(roots["ffpp"], {"train": 1, "val": 1, "test": 1} if quick else {"train": 4, "val": 1, "test": 2},
                   spec=spec)
        (data / ".complete").write_text("written by deepfake_ssat.demo_video\n")
    return roots


def _extract_faces(roots: dict[str, Path], out: Path) -> dict[str, Path]:
    """Extract every layout's faces (as dfssat-extract-faces does: 8 frames, 48 px squares, faces from 20 px)
    into ``out/<name>_faces``; returns those folders. A failed extraction stops the demo (RuntimeError)."""
    from .extract_faces import main as extract_main

    crops = {name: out / f"{name}_faces" for name in roots}
    for name, root in roots.items():
        code = extract_main([str(root), "--out", str(crops[name]), "--frames", "8", "--size", "48",
                             "--min-face", "20"])
        if code != 0:
            raise RuntimeError(f"face extraction of {root} failed (exit {code})")
    return crops


def run_video_demo(out: str | Path, quick: bool = False) -> dict:
    """Run every stage into ``out``; returns a summary (also ``out/demo.json``).

    Stages: extract faces (MTCNN) -> train a tiny VideoMAE + SSAT on the DFDC part -> zero-shot and one
    cross-manipulation fold (NeuralTextures left out) on the FF++ part -> predict one video -> Grad-CAM.
    """
    from .analyze import main as analyze_main
    from ..config import find_config, load_config
    from ..engine import fit
    from ..io import atomic_write_json
    from ..eval.ffpp import cross_manipulation, zero_shot
    from ..eval.report import TABLE8_FORMAT, update_table
    from ..inference import Detector

    out = Path(out)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 1)
        clock = now

    print("[demo] 1/6 writing the synthetic DFDC and FF++ layouts (real face, real codec)", flush=True)
    roots = build_demo_data(out / "data", quick)
    stage("data")
    print("[demo] 2/6 extracting faces with MTCNN (dfssat-extract-faces)", flush=True)
    crops = _extract_faces(roots, out)
    stage("extract")

    print("[demo] 3/6 training a tiny VideoMAE (0.95) + SSAT on the DFDC part", flush=True)
    # tiny model, tiny data: no augmentation (at 32 px the clip augmentation hides what it must learn)
    recipe = ["train.blr=5.0e-2", f"data.loader.batch_size={2 if quick else 8}", "data.augment=false",
              "train.warmup_epochs=1"]
    cfg = load_config("video/tiny/dfdc_videomae_095.yaml",
                      [f"data.root={crops['dfdc']}", f"train.epochs={2 if quick else 60}", *recipe])
    dfdc_run = out / "dfdc_videomae_095"
    dfdc = fit(cfg, dfdc_run)
    checkpoint = dfdc_run / "best.pt"
    stage("train_dfdc")

    print("[demo] 4/6 FF++: zero-shot, and cross-manipulation with NeuralTextures left out", flush=True)
    splits = roots["ffpp"] / "splits"
    name = "VideoMAE (0.95) + SSAT"
    records = zero_shot(checkpoint, crops["ffpp"], out / "ffpp_eval", name, splits)
    records += cross_manipulation(
        find_config("video/tiny/ffpp_videomae_095.yaml"), crops["ffpp"], out / "ffpp_eval", name, ["NeuralTextures"],
        checkpoint, splits_dir=splits, opts=[f"train.epochs={1 if quick else 20}", *recipe])
    paths = update_table(out / "ffpp_eval", records, TABLE8_FORMAT)
    stage("ffpp")

    print("[demo] 5/6 predicting one FF++ test video (dfssat-predict)", flush=True)
    test_pairs = json.loads((splits / "test.json").read_text())
    a, b = test_pairs[0]
    video = roots["ffpp"] / "manipulated_sequences" / "FaceSwap" / "c23" / "videos" / f"{a}_{b}.mp4"
    # faces found and cropped as the checkpoint's training faces were (its recorded extraction: 48 px squares,
    # faces from 20 px, JPEG crops of a tar store)
    prediction = Detector.from_checkpoint(checkpoint).predict_video(
        video, annotate=out / "prediction.png")
    stage("predict")

    print("[demo] 6/6 Grad-CAM: where the DFDC model looks (dfssat-analyze)", flush=True)
    analyze_main(["--checkpoint", str(checkpoint), "--what", "gradcam,attnmap", "--split", "test",
                  "--num-samples", "4", "--out", str(out / "analysis")])
    stage("analysis")

    summary = {
        "dfdc": {k: dfdc[k] for k in ("best_val_acc1", "test_acc1", "steps", "train_seconds")},
        "results": {k: str(v) for k, v in paths.items()},
        "prediction": {k: prediction[k] for k in ("path", "status", "fake_probability", "label", "num_faces",
                                                   "num_clips")},
        "annotation": str(out / "prediction.png"),
        "gradcam": str(out / "analysis" / "gradcam.png"),
        "seconds": timings,
    }
    atomic_write_json(out / "demo.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    from ._cli import CommandParser

    parser = CommandParser(command=__name__, description="Video demo: synthetic DFDC/FF++ -> faces -> VideoMAE + "
                                                         "SSAT -> FF++ zero-shot and cross-manipulation -> predict (CPU).")
    parser.add_argument("--out", default="runs/demo", help="demo folder (default runs/demo; data are reused)")
    parser.add_argument("--quick", action="store_true", help="smallest data and 1-2 epochs (a smoke test)")
    args = parser.parse_args(argv)
    from ..data.workers import tune_malloc

    tune_malloc()
    start = time.perf_counter()
    summary = run_video_demo(Path(args.out), args.quick)
    print("\n" + Path(summary["results"]["md"]).read_text())
    p = summary["prediction"]
    print(f"predict {p['path']}: {p['status']}, fake probability "
          f"{p['fake_probability'] if p['fake_probability'] is None else round(p['fake_probability'], 3)} -> "
          f"{p['label']} ({p['num_clips']} clips)")
    print(f"DFDC (synthetic) test accuracy {summary['dfdc']['test_acc1']:.1f}% after {summary['dfdc']['steps']} "
          f"updates; Grad-CAM over the face crops: {summary['gradcam']}")
    print(f"stages (s): {summary['seconds']}; total {time.perf_counter() - start:.0f} s; everything is in {args.out}")
    print("The data are synthetic stand-ins (one real face, four synthetic manipulations), not DFDC or FF++.")
    return 0
