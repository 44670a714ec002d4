"""Same random_state, data and machine: bit-identical predict_proba across processes."""

import subprocess
import sys

import numpy as np

FIT = """
import numpy as np
from sktransfer import TransferClassifier
rng = np.random.RandomState(0)
X = rng.randint(0, 256, (24, 40, 40, 3), dtype=np.uint8)
y = np.arange(24) % 3
clf = TransferClassifier(backbone="resnet18", weights=None, image_size=32, epochs=3, unfreeze=2,
                         finetune_epochs=2, finetune_lr=1e-3, dropout=0.5, random_state=7)
proba = clf.fit(X, y).predict_proba(X)
"""


def test_two_processes_give_bit_identical_probabilities(tmp_path):
    """A new process, and this one (after whatever other tests drew from torch's and
    numpy's global generators here), give the same bits."""
    path = tmp_path / "p.npy"
    subprocess.run([sys.executable, "-c", FIT + "import sys; np.save(sys.argv[1], proba)",
                    str(path)], check=True, timeout=300)
    here = {}
    exec(FIT, here)
    assert here["proba"].shape == (24, 3)
    np.testing.assert_array_equal(np.load(path), here["proba"])
