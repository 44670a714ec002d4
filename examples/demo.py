"""A short end-to-end run on real photos with real ImageNet weights.

Random crops of four of scikit-image's photos (a cat, an espresso, a rocket,
an astronaut) are the classes.  We compare the linear probe with
TransferClassifier (head only, then with the last two blocks fine-tuned),
5-fold cross-validated, and classify the photos with the ImageNet top.
"""

import time

import numpy as np
from PIL import Image
from skimage import data
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline

from sktransfer import PretrainedFeatures, TransferClassifier

PHOTOS = {"cat": data.chelsea, "espresso": data.coffee, "rocket": data.rocket,
          "astronaut": data.astronaut}


def crops(n_per_photo, seed=0):
    rng = np.random.RandomState(seed)
    X, y = [], []
    for label, load in PHOTOS.items():
        img = Image.fromarray(load())
        w, h = img.size
        for _ in range(n_per_photo):
            frac = rng.uniform(0.25, 0.6)
            cw, ch = int(w * frac), int(h * frac)
            left, top = rng.randint(0, w - cw + 1), rng.randint(0, h - ch + 1)
            X.append(img.crop((left, top, left + cw, top + ch)))
            y.append(label)
    return X, np.array(y)


def main():
    start = time.perf_counter()
    top = PretrainedFeatures("mobilenet", include_top=True).fit()
    proba = top.transform([data.chelsea(), data.coffee()])
    names = top.get_feature_names_out()
    print(f"ImageNet weights: {top.weights_}")
    for photo, p in zip(["chelsea", "coffee"], proba):
        best = np.argsort(-p)[:3]
        print(f"  {photo}: " + ", ".join(f"{names[i]} {p[i]:.2f}" for i in best))

    X, y = crops(15)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    models = {
        "linear probe (LogisticRegression)": make_pipeline(
            PretrainedFeatures("mobilenet"), LogisticRegression(max_iter=2000)),
        "TransferClassifier()": TransferClassifier("mobilenet", random_state=0),
        "TransferClassifier(unfreeze=2)": TransferClassifier(
            "mobilenet", unfreeze=2, finetune_lr=1e-4, random_state=0),
    }
    print(f"\n{len(X)} crops of {len(PHOTOS)} photos, 5-fold CV accuracy (chance 0.25):")
    for name, model in models.items():
        t = time.perf_counter()
        scores = cross_val_score(model, X, y, cv=cv)
        print(f"  {name:36s} {scores.mean():.3f} +/- {scores.std():.3f}"
              f"  ({time.perf_counter() - t:.1f} s)")
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
