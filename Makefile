# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo demo-image test bench clean

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

clean:
	rm -rf $(VENV) runs *.egg-info
