# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-image test bench gpu-wheels clean

# torch 2.14.1 is a CUDA build (5.5 GB in .venv): without ~7 GB free, say so before pip fails half-way
NEED_GB := 7
DISK_CHECK := import shutil, sys; free = shutil.disk_usage('$(VENV)').free / 2**30; sys.exit(0 if free >= $(NEED_GB) \
	else f'make: installing torch needs ~$(NEED_GB) GB free disk for $(VENV), {free:.1f} GB free: free some space')
$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip show -q torch 2>/dev/null || $(PY) -c "$(DISK_CHECK)"
	# torch first, pinned: nothing later may let a resolver pick another torch
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# the video pipeline on embedded (synthetic) data: faces -> VideoMAE + SSAT -> FF++ table -> predict
demo: $(STAMP)
	$(PY) tools/demo.py

# the image-mode demo: ViT from scratch vs ViT + SSAT on scikit-learn's digits
demo-image: $(STAMP)
	$(PY) tools/demo_digits.py

test: $(STAMP)
	$(PY) -m pytest -q -ra

bench: $(STAMP)
	$(PY) tools/benchmark.py model --json

# Python 3.12 x86-64 wheels of what a lent GPU machine lacks (the versions installed here), into .whl/
# (git-ignored; ~57 MB), for tools/gpu_check.sh
GPU_WHEELS := albumentations|albucore|pydantic|pydantic.core|annotated.types|typing.inspection|simsimd|stringzilla|decord|facenet.pytorch|av
gpu-wheels: $(STAMP)
	grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
	rm -rf .whl
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		--platform manylinux2010_x86_64 --platform manylinux1_x86_64 -d .whl \
		$$($(PY) -m pip freeze | grep -iE '^($(GPU_WHEELS))==')

clean:
	rm -rf $(VENV) runs *.egg-info
