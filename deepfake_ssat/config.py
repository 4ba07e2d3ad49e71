"""YAML configs with ``_base_`` inheritance and ``key=value`` overrides, parsed into dataclasses.

Every error is one line naming the key and the file (or ``--opts``) it came from::

    configs/x.yaml: train.epoch: unknown key (did you mean 'epochs'?)

Values are checked when a config is loaded (:func:`check_config`: :data:`CHOICES`, ranges), so a command
stops on a bad value before it builds anything.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib.resources
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

REQUIRED: Any = "???"  # sentinel default: the key must be given


class ConfigError(ValueError):
    """A config problem, phrased as one line naming the file and key."""


@dataclass
class ModelConfig:
    """Encoder factory and its typed arguments; unset (null) fields keep the factory default."""
    name: str = REQUIRED
    img_size: Optional[int] = None
    patch_size: Optional[int] = None
    in_chans: Optional[int] = None
    num_frames: Optional[int] = None
    tubelet_size: Optional[int] = None
    num_classes: Optional[int] = None  # null: taken from the dataset
    drop_path_rate: Optional[float] = None
    pos_embed: Optional[str] = None  # video: "3d" factorised sin-cos (default) or "1d" = VideoMAE's table


@dataclass
class DecoderConfig:
    """MAE decoder (paper: depth 2, width 128). 4 heads of dim 32: the authors' 16 heads of dim 8
    run attention ~4x slower per FLOP on CPU; set ``num_heads: 16`` to match their code exactly."""
    embed_dim: int = 128
    depth: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0


@dataclass
class SimCLRConfig:
    """``ssat.simclr``: projection head and NT-Xent temperature of the SimCLR auxiliary task."""
    proj_dim: int = 128
    hidden_dim: int = 512
    temperature: float = 0.1


@dataclass
class DINOConfig:
    """``ssat.dino``: head, temperatures, centring and teacher EMA of the DINO auxiliary task."""
    out_dim: int = 1024
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    teacher_temp: float = 0.04
    student_temp: float = 0.1
    center_momentum: float = 0.9
    ema: float = 0.996  # teacher EMA momentum at the start; raised to 1 on a cosine schedule


@dataclass
class SSATConfig:
    """Joint loss ``lam * CE + (1 - lam) * MSE_masked``; lam 1 = scratch, lam 0 = MAE pre-training."""
    lam: float = 0.1
    mask_ratio: float = 0.75
    norm_pix_loss: bool = True
    label_smoothing: float = 0.1
    # Reconstruction target of clips: "joint" (MAE's per-patch rule on the ImageNet-normalised tubelet: one mean and
    # variance over its ts*p*p*3 values) or "videomae" (VideoMAE's: [0, 1] pixels, each colour channel of a tubelet
    # standardised on its own). Video models only; images always take MAE's.
    video_target: str = "joint"
    # Auxiliary task (paper Table 4): "mae" (masked reconstruction through the decoder above; Swin
    # uses SimMIM's), or "simclr" / "dino" on two augmented views of each image (image datasets and
    # digits only; the decoder section is then unused). lam = 1 is scratch whatever the task.
    aux: str = "mae"
    simclr: SimCLRConfig = field(default_factory=SimCLRConfig)
    dino: DINOConfig = field(default_factory=DINOConfig)


# Keys renamed since configs were first written: old dotted key -> new one. An old key in a YAML
# file or --opts is an error that names the new key; in a stored (checkpoint) config it is mapped.
RENAMED = {
    **{f"ssat.simclr_{k}": f"ssat.simclr.{k}" for k in ("proj_dim", "hidden_dim", "temperature")},
    **{f"ssat.dino_{k}": f"ssat.dino.{k}" for k in ("out_dim", "hidden_dim", "bottleneck_dim", "teacher_temp",
                                                    "student_temp", "center_momentum", "ema")},
}


@dataclass
class FaceClipsConfig:
    """``data.faces``: face-clip datasets (dfdc, ffpp, celebdf, list), read from the output of ``dfssat-extract-faces``
    at ``data.root``; a clip is ``model.num_frames`` stored face crops ``frame_step`` stored frames apart."""
    frame_step: int = 1
    eval_clips: int = 4  # clips per video at evaluation, starts spread over the video
    val_parts: Optional[list[str]] = None  # DFDC: part folders of the validation fold
    test_parts: Optional[list[str]] = None  # DFDC: part folders of the test fold
    compression: str = "c23"  # FF++: raw | c0 | c23 | c40
    methods: Optional[list[str]] = None  # FF++: manipulations to use; null = every one extracted
    exclude_methods: list[str] = field(default_factory=list)  # FF++: e.g. [NeuralTextures]
    splits_dir: Optional[str] = None  # FF++: folder of the official train/val/test.json
    test_list: Optional[str] = None  # Celeb-DF v2: List_of_testing_videos.txt
    # list: the CSV path,label[,group][,split]; when set, only its videos train, with its labels / groups /
    # splits (null: every list video extracted under root, as its manifest says)
    video_list: Optional[str] = None


@dataclass
class ImagesConfig:
    """``data.images``: still-image datasets (cifar10, cifar100, flowers102, flowers102_trainval (the paper's train +
    val), svhn; ImageFolder trees chaoyang, pmnist, domainnet_*, imagenet, imagefolder; digits for the subsets,
    Mixup / CutMix and the perturbed test): read from ``data.root``, fetched into it only with ``download: true``."""
    download: bool = False
    train_transform: Optional[str] = "deit"  # deit (RandAugment m9 + erasing 0.25) | simple | null = eval transform
    subset_fraction: Optional[float] = None  # fixed-seed (split_seed) class-stratified part of the training split
    subset_size: Optional[int] = None  # the same as a count; set at most one of the two
    mixup: float = 0.0  # timm Mixup alpha (DeiT: 0.8); 0 = off
    cutmix: float = 0.0  # timm CutMix alpha (DeiT: 1.0); 0 = off
    eval_perturbed: bool = False  # also test on random-perspective perturbed images (Table 2): test_acc1_perturbed
    perturb_distortion: float = 0.5  # RandomPerspective distortion_scale of that test
    perturb_seed: int = 0  # one fixed perspective draw per test image


@dataclass
class LoaderConfig:
    """``data.loader``: how training batches are drawn and reach the device. ``batch_size`` is per process (per GPU
    under torchrun)."""
    batch_size: int = 64
    num_workers: int = 0
    prefetch_factor: Optional[int] = None  # batches each loader worker prepares ahead (null: torch's 2)
    # face clips cross to the device as: uint8 (normalised there: 4x less host -> device traffic and no
    # normalisation in the workers) | float (normalised by the workers) | auto (uint8 on CUDA)
    transfer: str = "auto"
    balanced: bool = False  # sample classes equally often (DFDC is ~82% fake)


@dataclass
class DataConfig:
    """Dataset (``name`` at ``root``), its splits, and three groups: ``faces`` (face-clip datasets), ``images``
    (still-image datasets) and ``loader`` (batches).

    Splits: datasets without their own are drawn with ``split_seed``, ``val_fraction`` and ``test_fraction``.
    ``list`` (your own labelled videos, ``dfssat-extract-faces --list CSV``) splits by group (the CSV's ``group``,
    else each video alone): a group keeps the split its CSV rows name, the other groups are drawn.
    """
    name: str = REQUIRED
    root: Optional[str] = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    split_seed: int = 0
    augment: bool = True
    faces: FaceClipsConfig = field(default_factory=FaceClipsConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)


# DataConfig's flat keys before it was grouped (data.batch_size -> data.loader.batch_size, ...). Unlike RENAMED they
# are still read everywhere (YAML, --opts, stored configs): a YAML file or --opts using one gets a one-line note
# naming the new key; a stored (checkpoint, run folder) config is mapped silently.
MOVED = {f"data.{leaf}": f"data.{group}.{leaf}" for group, cls in
         (("faces", FaceClipsConfig), ("images", ImagesConfig), ("loader", LoaderConfig))
         for leaf in (f.name for f in dataclasses.fields(cls))}


@dataclass
class TrainConfig:
    epochs: int = 100
    blr: float = 1.0e-3  # lr = blr * batch_size * accum_steps * world_size / 256
    min_lr: float = 1.0e-6
    warmup_epochs: float = 5.0
    weight_decay: float = 0.05
    # AdamW betas; null: (0.9, 0.95) for MAE-style pre-training (ssat.lam = 0), else (0.9, 0.999) as DeiT
    # and VideoMAE fine-tuning use
    betas: Optional[list[float]] = None
    clip_grad: Optional[float] = None
    accum_steps: int = 1
    amp: str = "bf16"  # bf16 | fp16 | none; autocast is used on CUDA only
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0
    init_from: Optional[str] = None  # encoder weights to start from: our checkpoint, VideoMAE or MAE .pth
    save_every_steps: int = 0  # 0: checkpoint at epoch ends only
    log_every_steps: int = 10
    # best.pt is chosen on validation by: auc (video level) | acc (video level for face clips) | loss
    # (video log-loss for face clips, else the joint loss); auto = auc for face-clip datasets, else acc.
    # Without a classifier (ssat.lam = 0) the reconstruction loss decides.
    select: str = "auto"
    # GPU speed levers (docs/performance.md): torch.compile the train step (compiled once: a run has one
    # mask ratio); fused AdamW kernel on CUDA (CPUs always use the multi-tensor path)
    compile: bool = False
    fused_adamw: bool = True
    # when the host reads the loss: step (every update: a NaN/inf loss stops the run before it is applied) | log
    # (every log_every_steps updates, at checkpoints and epoch ends: no host sync in the step; a NaN/inf stops the
    # run at the next read, keeping the last saved last.pt) | auto (log on CUDA, step on CPUs)
    host_sync: str = "auto"


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    decoder: Optional[DecoderConfig] = field(default_factory=DecoderConfig)
    ssat: SSATConfig = field(default_factory=SSATConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---------------------------------------------------------------------------------------------
# Checks: the values a config may hold, whatever reads it (one line naming the key and where it was set)

CHOICES: dict[str, tuple[Optional[str], ...]] = {
    "model.pos_embed": ("3d", "1d", None),
    "ssat.aux": ("mae", "simclr", "dino"),
    "ssat.video_target": ("joint", "videomae"),
    "data.faces.compression": ("raw", "c0", "c23", "c40"),
    "data.images.train_transform": ("deit", "simple", None),
    "data.loader.transfer": ("auto", "uint8", "float"),
    "train.amp": ("bf16", "fp16", "none"),
    "train.select": ("auto", "auc", "acc", "loss"),
    "train.host_sync": ("auto", "step", "log"),
}


def _value(cfg: Config, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _choice_problems(cfg: Config) -> list[tuple[str, str]]:
    """``(key, message)`` for each :data:`CHOICES` key holding another value."""
    problems = []
    for key, allowed in CHOICES.items():
        value = _value(cfg, key)
        if value not in allowed:
            names = ", ".join(str(a) for a in allowed if a is not None)
            problems.append((key, f"{key}: must be one of {names}{' or null' if None in allowed else ''}, "
                                  f"got {value!r}"))
    return problems


def _range_problems(cfg: Config) -> list[tuple[str, str]]:
    """``(key, message)`` for each number out of its range, or combination that cannot run."""
    t, loader, images = cfg.train, cfg.data.loader, cfg.data.images
    problems = []
    small = [k for k, v in (("train.accum_steps", t.accum_steps), ("data.loader.batch_size", loader.batch_size),
                            ("train.epochs", t.epochs)) if v < 1]
    if small:
        problems.append((small[0], "train.accum_steps, data.loader.batch_size and train.epochs must be >= 1"))
    if not (math.isfinite(t.blr) and t.blr > 0):
        problems.append(("train.blr", f"train.blr: must be a positive number, got {t.blr}"))
    if t.clip_grad is not None and not t.clip_grad > 0:
        problems.append(("train.clip_grad", f"train.clip_grad: must be a positive gradient norm or null (no "
                                            f"clipping), got {t.clip_grad}"))
    for key, value, ok, allowed in (
            ("train.min_lr", t.min_lr, lambda v: math.isfinite(v) and v >= 0, ">= 0"),
            ("train.weight_decay", t.weight_decay, lambda v: math.isfinite(v) and v >= 0, ">= 0"),
            ("model.drop_path_rate", cfg.model.drop_path_rate, lambda v: v is None or 0 <= v <= 1, "in [0, 1] or null"),
            ("train.log_every_steps", t.log_every_steps, lambda v: v >= 1, ">= 1")):
        if not ok(value):
            problems.append((key, f"{key}: must be {allowed}, got {value}"))
    if not t.warmup_epochs >= 0:
        problems.append(("train.warmup_epochs", f"train.warmup_epochs: must be >= 0, got {t.warmup_epochs}"))
    if t.betas is not None and (len(t.betas) != 2 or not all(0.0 <= b < 1.0 for b in t.betas)):
        problems.append(("train.betas", f"train.betas: two numbers in [0, 1), got {t.betas}"))
    if loader.prefetch_factor is not None and (loader.num_workers == 0 or loader.prefetch_factor < 1):
        problems.append(("data.loader.prefetch_factor",
                         f"data.loader.prefetch_factor: {loader.prefetch_factor} needs data.loader.num_workers > 0 "
                         f"and a value >= 1 (or null)"))
    if (images.mixup > 0 or images.cutmix > 0) and loader.batch_size % 2:
        problems.append(("data.loader.batch_size", f"data.loader.batch_size: Mixup / CutMix pair the items of a "
                                                   f"batch; {loader.batch_size} is odd"))
    return problems


def check_config(cfg: Config, origins: dict[str, str] | None = None) -> None:
    """Raise one :class:`ConfigError` line for the first value ``cfg`` may not hold (:data:`CHOICES`, ranges).

    Run when a config is loaded (``origins``: where each key was set, named first) and again by the trainer,
    for configs built or changed in code. Checks that need the data or the model (Mixup on clips, a batch
    larger than the training split, ``train.select=auc`` without both classes) stay where those are known.
    """
    problems = _choice_problems(cfg) + _range_problems(cfg)
    if problems:
        key, message = problems[0]
        where = (origins or {}).get(key)
        raise ConfigError(f"{where}: {message}" if where else message)


def _checked(cfg: Config, origins: dict[str, str]) -> Config:
    check_config(cfg, origins)
    return cfg


# ---------------------------------------------------------------------------------------------
# YAML loading: tree + origin of every leaf key


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        tree = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(e, 'problem', e)})") from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got {type(tree).__name__}")
    return tree


def _merge(dst: dict, src: dict, origins: dict[str, str], source: str, prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst``; record ``source`` as the origin of every key it sets."""
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        origins[dotted] = source
        if isinstance(value, dict):
            if not isinstance(dst.get(key), dict):
                dst[key] = {}
            _merge(dst[key], value, origins, source, dotted + ".")
        else:
            dst[key] = value


def _load_tree(path: Path, origins: dict[str, str], seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: _base_ cycle through {' -> '.join(str(p) for p in seen)}")
    tree = _read_yaml(path)
    bases = tree.pop("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    merged: dict = {}
    for base in bases:
        _merge(merged, _load_tree(path.parent / base, origins, seen + (path,)), {}, "")
    _merge(merged, _upgrade(tree, MOVED, str(_display(path))), origins, str(_display(path)))
    return merged


def _display(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def parse_overrides(opts: list[str]) -> dict:
    """``["train.epochs=5", "decoder=null"]`` -> nested dict; values are parsed as YAML scalars."""
    tree: dict = {}
    for opt in opts:
        key, sep, raw = opt.partition("=")
        if not sep or not key:
            raise ConfigError(f"--opts: {opt!r} is not key=value (e.g. train.epochs=5)")
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        try:
            node[leaf] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[leaf] = raw
    return tree


# ---------------------------------------------------------------------------------------------
# Typed conversion


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, key: str, origins: dict[str, str]) -> Any:
    where = origins.get(key) or origins.get(key.split("[")[0], "<defaults>")
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], key, origins)
    if origin is list:
        if isinstance(value, (str, int)) and not isinstance(value, bool):  # one item: data.faces.methods=Deepfakes
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: {key}: must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        if item_tp is str:  # names may be numbers, e.g. DFDC part 7
            value = [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return [_convert(v, item_tp, f"{key}[{i}]", origins) for i, v in enumerate(value)]
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {key}: must be a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, origins, key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{where}: {key}: must be {tp.__name__}, got {value!r}")
    raise ConfigError(f"{where}: {key}: unsupported type {_type_name(tp)}")


def _build(cls: type, tree: dict, origins: dict[str, str], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in tree:
        if key not in hints:
            raise ConfigError(f"{origins.get(prefix + str(key), '<input>')}: {prefix}{key}: unknown key"
                              f"{_unknown_key_hint(cls, str(key), prefix)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        key = prefix + f.name
        if f.name in tree:
            kwargs[f.name] = _convert(tree[f.name], hints[f.name], key, origins)
        elif f.default is REQUIRED:
            where = origins.get(prefix.rstrip("."), origins.get("", "<config>"))
            raise ConfigError(f"{where}: {key}: required value missing")
        elif dataclasses.is_dataclass(hints[f.name]):  # absent section: its required keys still apply
            kwargs[f.name] = _build(hints[f.name], {}, origins, key + ".")
    return cls(**kwargs)


def _unknown_key_hint(cls: type, key: str, prefix: str) -> str:
    """`` (did you mean 'x'?)`` for an unknown key of section ``cls``: a close field name, else a close field of one
    of its groups (``data.batch_siz`` -> ``loader.batch_size``); a key of :data:`RENAMED` names its new place."""
    if prefix + key in RENAMED:
        return f" (renamed: now {RENAMED[prefix + key]})"
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    close = difflib.get_close_matches(key, names, n=1)
    if not close:
        hints = typing.get_type_hints(cls)
        nested = {sub.name: f"{f.name}.{sub.name}" for f in fields if dataclasses.is_dataclass(hints[f.name])
                  for sub in dataclasses.fields(hints[f.name])}
        close = [nested[c] for c in difflib.get_close_matches(key, list(nested), n=1)]
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"


def _upgrade(tree: dict, table: dict[str, str], note: str | None = None) -> dict:
    """A copy of ``tree`` with every old key of ``table`` (:data:`RENAMED`, :data:`MOVED`) moved to its new dotted
    place (a value already at the new place wins). ``note``: the source (a file, ``--opts``) named in a one-line
    note on stderr for each old key found; None: moved silently (stored configs)."""
    tree = _copy_tree(tree)
    for old, new in table.items():
        *old_parents, old_leaf = old.split(".")
        node = tree
        for part in old_parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        value = node.pop(old_leaf)
        if note is not None:
            print(f"[config] {note}: {old} is now {new} (the old key is still read; rename it)", file=sys.stderr)
        *new_parents, new_leaf = new.split(".")
        dst = tree
        for part in new_parents:
            if not isinstance(dst.get(part), dict):
                dst[part] = {}
            dst = dst[part]
        dst.setdefault(new_leaf, value)
    return tree


def _copy_tree(tree: dict) -> dict:
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def config_from_dict(tree: dict, source: str = "<dict>", overrides: list[str] | None = None) -> Config:
    """Build a :class:`Config` from a plain nested dict (e.g. one stored in a checkpoint).

    Keys renamed since (:data:`RENAMED`, e.g. ``ssat.simclr_temperature``) or moved into a group
    (:data:`MOVED`, e.g. ``data.batch_size``) are accepted here and moved to their new place, so that
    checkpoints written before the change still load; YAML files and ``--opts`` get an error naming
    a renamed key's new name instead (a moved key: a note).
    """
    origins: dict[str, str] = {"": source}
    merged: dict = {}
    _merge(merged, _upgrade(tree, {**RENAMED, **MOVED}), origins, source)
    _merge(merged, _upgrade(parse_overrides(overrides or []), MOVED, "--opts"), origins, "--opts")
    return _checked(_build(Config, merged, origins), origins)


def load_run_config(path: str | os.PathLike) -> Config:
    """A run folder's saved ``config.yaml`` (fully resolved by :func:`dump_config`): read like a
    checkpoint's config, so runs written before a key was renamed (:data:`RENAMED`) still load."""
    path = Path(path)
    return config_from_dict(_read_yaml(path), source=str(_display(path.resolve())))


def packaged_configs() -> Path:
    """The folder of configs shipped inside the package (``deepfake_ssat/configs``)."""
    return Path(str(importlib.resources.files("deepfake_ssat") / "configs"))


def find_config(name: str | os.PathLike) -> Path:
    """``name`` as a config file: an existing path, else a packaged config named with or without its
    folder and ``.yaml`` (``dfdc_videomae_095``, ``video/dfdc_videomae_095.yaml``, ``configs/...``).

    A name that is not a full packaged path matches the packaged configs whose path ends with it
    (``tiny/x`` finds ``video/tiny/x.yaml``; an absolute path never does). Several matches pick the
    one in the shallowest folder (``video/x.yaml`` before ``video/tiny/x.yaml``); a tie is a
    one-line :class:`ConfigError`.
    """
    path = Path(name)
    if path.is_file():
        return path
    root = packaged_configs()
    rel = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) and len(path.parts) > 1 else path
    rel = rel if rel.suffix in (".yaml", ".yml") else rel.with_name(rel.name + ".yaml")
    if not rel.is_absolute() and (root / rel).is_file():
        return root / rel
    hits = sorted((p for p in root.rglob(rel.name) if p.relative_to(root).parts[-len(rel.parts):] == rel.parts),
                  key=lambda p: (len(p.relative_to(root).parts), str(p)))
    if hits and (len(hits) == 1 or len(hits[0].parts) < len(hits[1].parts)):
        return hits[0]
    if hits:
        shown = ", ".join(str(p.relative_to(root)) for p in hits)
        raise ConfigError(f"{name}: several packaged configs have that name ({shown}); give its folder too")
    names = [str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml")
             if not any(part.startswith("_") for part in p.relative_to(root).parts)]  # not the bases
    close = difflib.get_close_matches(str(rel.with_suffix("")), names, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see deepfake_ssat/configs"
    raise ConfigError(f"{name}: config file not found (neither a file nor a packaged config){hint}")


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    """Read ``path`` (a file, or a packaged config's name: :func:`find_config`) following ``_base_``,
    apply ``key=value`` overrides, validate, return a Config."""
    path = find_config(path)
    origins: dict[str, str] = {"": str(_display(Path(path).resolve()))}
    tree = _load_tree(Path(path), origins)
    _merge(tree, _upgrade(parse_overrides(overrides or []), MOVED, "--opts"), origins, "--opts")
    return _checked(_build(Config, tree, origins), origins)


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def flat_config(cfg: Config) -> dict[str, Any]:
    """Every leaf of ``cfg`` by its dotted key: ``{"train.epochs": 5, "data.loader.batch_size": 64, ...}``."""
    def walk(tree: dict, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(walk(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out
    return walk(config_to_dict(cfg), "")


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
