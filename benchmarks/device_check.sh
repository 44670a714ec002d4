#!/usr/bin/env bash
# One short check (< 5 minutes) on a machine with a GPU: the GPU-marked tests and
# images/s on CPU vs GPU. Run from the repository root after `make install`
# (or with PY pointing at a Python that has sktransfer installed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
"$PY" -m pytest -q -m gpu tests/test_gpu.py
# --scale: a defaults fit of 16,000 Fashion-MNIST images (FASHION_MNIST_DIR: a folder
# with Debian's dataset-fashion-mnist files, where the package is not installed).
"$PY" benchmarks/bench_device.py --n "${N:-512}" --scale "${SCALE:-16000}"
