"""The layering and the contracts that let a newcomer change one room without the others."""
import ast
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import build_model, trainer
from deepfake_ssat.models.encoder import Encoder
from deepfake_ssat.models.registry import create_model, list_models

# Lower layers never import higher ones; a layer may import its own package and anything below.
LAYERS = {
    "io": 0, "runcli": 0, "config": 0, "__version__": 0, "metrics": 0,
    "models": 1, "faces": 1,
    "data": 2,
    "engine": 3,
    "eval": 4,
    "inference": 5, "analysis": 5,
    "export": 6,
    "study": 7, "bench": 7,
    "commands": 8,
}


def _imports(path: Path) -> list[tuple[str, int]]:
    """(top-level package module imported, line) for every deepfake_ssat import in ``path``."""
    package = path.relative_to(ROOT).with_suffix("").parts[:-1]  # deepfake_ssat/a/b.py, a/__init__.py: (.., a)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            names = [n.name for n in node.names] if node.module is None and len(target) == 1 else [None]
            for name in names:
                full = target + ([name] if name else [])
                if full[0] == "deepfake_ssat" and len(full) > 1:
                    found.append((full[1], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "deepfake_ssat" and len(parts) > 1:
                    found.append((parts[1], node.lineno))
    return found


def test_no_import_runs_up_a_layer():
    upward = []
    for path in sorted((ROOT / "deepfake_ssat").rglob("*.py")):
        parts = path.relative_to(ROOT / "deepfake_ssat").with_suffix("").parts
        if parts == ("__init__",):
            continue  # the package root re-exports the public API lazily
        here = parts[0]
        assert here in LAYERS, f"{path}: put deepfake_ssat.{here} in a layer of LAYERS"
        for target, line in _imports(path):
            assert target in LAYERS, f"{path}:{line}: deepfake_ssat.{target} is in no layer"
            if target != here and LAYERS[target] >= LAYERS[here]:
                upward.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {target}")
    assert upward == []


def test_face_extraction_does_not_load_the_training_engine():
    code = ("import sys, deepfake_ssat.faces.extract, deepfake_ssat.faces.detect, deepfake_ssat.commands.extract_faces\n"
            "heavy = [m for m in sys.modules if m.startswith(('deepfake_ssat.engine', 'tensorboard', "
            "'torch.utils.tensorboard', 'timm'))]\n"
            "print(heavy)\nsys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", sorted(list_models()))
def test_every_registered_encoder_meets_the_contract(name):
    model = create_model(name, num_classes=2, **({"img_size": 64} if name == "resnet50" else {}))
    assert isinstance(model, Encoder)
    assert model.masking in ("drop", "replace", None)
    assert (model.num_frames is None) == (len(model.grid_size) == 2)
    assert len(model.mask_grid_size) == len(model.grid_size)


def test_the_trainer_never_asks_which_model_it_holds():
    source = inspect.getsource(trainer)
    for word in ("SSATMultiView", "multiview", "isinstance(model", "isinstance(run.model", "aux_tasks"):
        assert word not in source, word
    assert max(len(inspect.getsource(f).splitlines()) for f in vars(trainer).values()
               if inspect.isfunction(f) and f.__module__ == trainer.__name__) <= 80


@pytest.mark.parametrize("aux, opts", [("mae", []), ("mae", ["ssat.lam=1.0"]), ("mae", ["ssat.lam=0.0"]),
                                       ("simclr", []), ("dino", [])])
def test_every_wrapper_speaks_the_training_step_contract(tiny_cfg, aux, opts):
    model = build_model(tiny_cfg(f"ssat.aux={aux}", *opts), num_classes=10)
    x, y = torch.randn(4, 1, 32, 32), torch.arange(4)
    train_batch = ([x, x.flip(-1)], y) if model.num_views == 2 else (x, y)
    loss, parts = model.training_step(train_batch)
    assert loss.ndim == 0 and torch.isfinite(loss) and set(parts) <= {"cls", "rec"}
    loss.backward()
    loss, parts, logits = model.eval_step((x, y))
    assert torch.isfinite(loss) and (logits is None) == (opts == ["ssat.lam=0.0"])
    model.after_update(0.5)
    model.after_weights_loaded()
    assert isinstance(model.describe(), str) and isinstance(model.find_unused_parameters, bool)


def test_configs_of_every_kind_build(tiny_config_file):
    """A video config and the tiny image config give models of the same contract."""
    for cfg in (load_config("video/tiny/dfdc_videomae_095"), load_config(tiny_config_file)):
        assert isinstance(build_model(cfg, 2).encoder, Encoder)


def _image_folder(root: Path) -> Path:
    """A two-class ImageFolder tree (train / val / test), two 8 px images per class and split."""
    from PIL import Image

    for split in ("train", "val", "test"):
        for c, cls in enumerate(("a", "b")):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (255 * c, 40 * i, 0)).save(root / split / cls / f"{i}.png")
    return root


def _every_kind_of_split(tmp_path: Path) -> dict[str, object]:
    """One split of each dataset class the trainer can receive from build_datasets, built from tiny fixtures."""
    from deepfake_ssat.bench.common import write_synthetic_extraction
    from deepfake_ssat.config import DataConfig, ImagesConfig
    from deepfake_ssat.data import build_datasets

    write_synthetic_extraction(tmp_path / "faces", 6, 8, 32)
    perturbed = ImagesConfig(eval_perturbed=True)
    image_root = str(_image_folder(tmp_path / "folder"))
    builds = {
        "digits": build_datasets(DataConfig(name="digits", images=perturbed), 32, 1),
        "digits, two views": build_datasets(DataConfig(name="digits"), 32, 1, views=2),
        "image folder": build_datasets(DataConfig(name="imagefolder", root=image_root, images=perturbed), 32, 3),
        "image folder, two views": build_datasets(DataConfig(name="imagefolder", root=image_root), 32, 3, views=2),
        # ffpp, celebdf and list split the same FaceClipDataset by other protocols (build_face_clips)
        "dfdc face clips": build_datasets(DataConfig(name="dfdc", root=str(tmp_path / "faces"), val_fraction=0.34,
                                                     test_fraction=0.34), 32, 3, num_frames=4),
    }
    return {f"{kind} {split}": ds for kind, splits in builds.items() for split, ds in splits.items()}


def test_every_dataset_the_trainer_receives_meets_the_data_contract(tmp_path):
    from deepfake_ssat.data import TrainingData

    splits = _every_kind_of_split(tmp_path)
    kinds = {type(ds).__name__ for ds in splits.values()}
    assert kinds == {"TensorImages", "ImageSubset", "PerspectivePerturbed", "FaceClipDataset"}, kinds
    for name, ds in splits.items():
        assert isinstance(ds, TrainingData), name
        assert len(ds.labels) == len(ds) > 0, name
        assert isinstance(ds.describe(), str) and ds.describe(), name
        manifest = ds.manifest()
        assert isinstance(manifest, list) and all(isinstance(row, dict) for row in manifest), name
        face_clips = type(ds).__name__ == "FaceClipDataset"
        assert (ds.extraction is not None) == face_clips and (face_clips or ds.extraction is None), name
    assert not isinstance(torch.utils.data.TensorDataset(torch.zeros(2)), TrainingData)  # the check can fail


def test_the_trainer_calls_the_data_contract_without_probing():
    source = inspect.getsource(trainer)
    for word in ("hasattr(", "getattr(ds", "getattr(datasets", 'getattr(run.datasets'):
        assert word not in source, word
