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
    "io": 0, "runtime": 0, "config": 0, "__version__": 0, "metrics": 0,
    "models": 1, "faces": 1,
    "data": 2, "synthetic": 2,
    "engine": 3,
    "eval": 4,
    "inference": 5, "analysis": 5,
    "study": 7, "bench": 7,
    "commands": 8,
    "__main__": 9,
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


HEAVY = ("deepfake_ssat.engine", "deepfake_ssat.data", "deepfake_ssat.models", "deepfake_ssat.faces",
         "deepfake_ssat.inference", "deepfake_ssat.eval", "deepfake_ssat.analysis", "timm", "torchvision",
         "tensorboard", "torch.utils.tensorboard", "sklearn", "decord", "av", "cv2", "albumentations",
         "facenet_pytorch", "matplotlib", "scipy", "skimage")


def _heavy_modules_loaded_by(*modules: str) -> list[str]:
    """The modules of ``HEAVY`` (or below them) that importing ``modules`` in a fresh interpreter loads."""
    code = (f"import sys\nimport {', '.join(modules)}\nheavy = {HEAVY!r}\n"
            "print(sorted(m for m in sys.modules if m in heavy or m.startswith(tuple(h + '.' for h in heavy))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip())


def test_the_ground_floor_loads_no_heavy_module():
    """Device resolution, file helpers, configs and the command-line plumbing cost torch and nothing else of
    weight (counted by the modules they load, not by seconds): a command checks its flags and its device
    before the trainer, timm or a video decoder loads."""
    assert _heavy_modules_loaded_by("deepfake_ssat.runtime", "deepfake_ssat.io", "deepfake_ssat.config",
                                    "deepfake_ssat.commands", "deepfake_ssat.commands._cli") == []
    assert "deepfake_ssat.engine.trainer" in _heavy_modules_loaded_by("deepfake_ssat.engine")  # the probe sees


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


def _package_modules() -> dict[str, Path]:
    """``deepfake_ssat.a.b`` -> its file, for every module and package of the library."""
    found = {}
    for path in sorted((ROOT / "deepfake_ssat").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _module_level_imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules ``name`` imports when it is imported (top-level statements; lazy imports inside
    functions are not part of the import graph)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = base + (node.module.split(".") if node.module else [])
            for alias in node.names:
                full = ".".join(target + [alias.name])
                found.add(full if full in modules else ".".join(target))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def test_no_import_circles():
    """Module-level imports form no cycle: every room can be imported (and understood) before the ones above it."""
    modules = _package_modules()
    graph = {name: _module_level_imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                return path + [name, dep]
            if dep not in state:
                circle = visit(dep, path + [name])
                if circle:
                    return circle
        state[name] = 2
        return None

    for name in sorted(graph):
        if name not in state:
            circle = visit(name, [])
            assert circle is None, " -> ".join(circle[circle.index(circle[-1]):])


def test_no_function_over_80_lines():
    long = []
    for path in sorted((ROOT / "deepfake_ssat").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert long == []


# the same name in several modules with the same meaning, by convention: each command's entry point and parser,
# each model family's foreign-checkpoint filter (timm's convention)
ONE_PER_MODULE = {"main", "build_parser", "checkpoint_filter_fn"}


def test_no_public_name_is_defined_in_two_modules():
    """One name, one meaning: a public top-level function, class or constant is defined in one module only."""
    where: dict[str, list[str]] = {}
    for path in sorted((ROOT / "deepfake_ssat").rglob("*.py")):
        if path.name == "__init__.py":
            continue  # packages re-export
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [t.id for t in targets if isinstance(t, ast.Name)]
            else:
                continue
            for name in names:
                if not name.startswith("_") and name not in ONE_PER_MODULE:
                    where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}


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
    from deepfake_ssat.synthetic.extractions import write_synthetic_extraction
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
