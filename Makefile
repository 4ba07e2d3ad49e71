# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-image test bench gpu-wheels clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
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
# (git-ignored; ~57 MB), for benchmarks/gpu_check.sh
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
