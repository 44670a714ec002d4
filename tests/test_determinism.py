"""Same random_state, data and machine: bit-identical predict_proba across processes."""

import subprocess
import sys

import numpy as np

SCRIPT = """
import sys
import numpy as np
from sktransfer import TransferClassifier
rng = np.random.RandomState(0)
X = rng.randint(0, 256, (24, 40, 40, 3), dtype=np.uint8)
y = np.arange(24) % 3
clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=3, unfreeze=2,
                         finetune_epochs=2, finetune_lr=1e-3, dropout=0.5, random_state=7)
np.save(sys.argv[1], clf.fit(X, y).predict_proba(X))
"""


def test_two_processes_give_bit_identical_probabilities(tmp_path):
    outs = []
    for i in range(2):
        path = tmp_path / f"p{i}.npy"
        subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True, timeout=300)
        outs.append(np.load(path))
    assert outs[0].shape == (24, 3)
    np.testing.assert_array_equal(outs[0], outs[1])
