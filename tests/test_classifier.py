"""TransferClassifier: labels, freezing, the two phases, sklearn integration, bad input."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from torchvision.models import resnet18

from sktransfer import PretrainedFeatures, TransferClassifier
from sktransfer.inputs.images import ImageDecodeError
from sktransfer import clear_caches  # noqa: E402

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)


@pytest.mark.parametrize("labels", [
    ["cat", "dog"], [3, 7], [True, False], [-1, 2], ["b", "a"],
])
def test_labels_of_any_type_round_trip(tiny, labels):
    X, y01 = tiny
    y = np.array(labels, dtype=object if isinstance(labels[0], str) else None)[y01]
    clf = TransferClassifier(**{**FAST, "lr": 1e-2, "epochs": 5}).fit(X, list(y))
    assert list(clf.classes_) == sorted(set(labels))
    pred = clf.predict(X)
    assert set(pred) <= set(labels) and type(pred[0]) is type(np.asarray(labels)[0])
    proba = clf.predict_proba(X)
    # columns follow classes_
    np.testing.assert_array_equal(pred, clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X, y) >= 0.75


def test_unfreeze_0_leaves_the_whole_backbone_bit_identical(tiny, r18_weights):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "weights": r18_weights, "epochs": 3}).fit(X, y)
    reference = torch.load(r18_weights, weights_only=True)
    fitted = _backbone_state(clf)
    assert set(fitted) == {k for k in reference if not k.startswith("fc.")}
    for key, value in fitted.items():
        assert torch.equal(value, reference[key]), key


def _backbone_state(clf):
    """The fitted backbone's state_dict under torchvision's names."""
    names = ["stem", "layer1", "layer2", "layer3", "layer4"]
    blocks = list(clf.extractor_.modules[:clf.n_blocks_ - len(clf.net_.module_.blocks)])
    blocks += list(clf.net_.module_.blocks)
    state = {}
    for name, block in zip(names, blocks):
        for key, value in block.state_dict().items():
            if name == "stem":  # Sequential(conv1, bn1, relu, maxpool)
                idx, rest = key.split(".", 1)
                key, name_ = rest, ["conv1", "bn1"][int(idx)]
                state[f"{name_}.{key}"] = value
            else:
                state[f"{name}.{key}"] = value
    return state


def test_unfreeze_2_changes_exactly_the_last_two_blocks_and_the_head(tiny, r18_weights):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "weights": r18_weights, "unfreeze": 2,
                                "finetune_epochs": 2, "finetune_lr": 1e-2}).fit(X, y)
    reference = torch.load(r18_weights, weights_only=True)
    for key, value in _backbone_state(clf).items():
        trainable = key.startswith(("layer3.", "layer4.")) and not key.endswith(
            ("running_mean", "running_var", "num_batches_tracked"))
        if trainable:
            assert not torch.equal(value, reference[key]), f"{key} did not train"
        else:  # earlier blocks, and every BatchNorm statistic, untouched
            assert torch.equal(value, reference[key]), f"{key} changed"
    assert len(clf.net_.module_.blocks) == 2


def test_partial_unfreeze_lowers_the_learning_rate(tiny):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "epochs": 3, "lr": 1e-3, "unfreeze": 1,
                                "head_solver": "optimizer",
                                "finetune_epochs": 2, "finetune_lr": 1e-5}).fit(X, y)
    assert clf.history_[:, "lr"] == [1e-3] * 3 + [1e-5] * 2
    assert all(g["lr"] == 1e-5 for g in clf.net_.optimizer_.param_groups)
    assert dict(clf.net_.callbacks_)["partial_unfreeze"].unfrozen_


def test_unfreeze_all_and_no_phase_2_without_unfreeze(tiny):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "unfreeze": "all", "finetune_epochs": 1,
                                "head_solver": "optimizer"}).fit(X, y)
    assert len(clf.net_.module_.blocks) == 5 and clf.extractor_.modules == []
    assert len(clf.history_) == 3
    assert len(TransferClassifier(**FAST, head_solver="optimizer").fit(X, y).history_) == 2
    assert len(TransferClassifier(**FAST).fit(X, y).history_) == 1  # one exact solve


def test_random_state_makes_fits_reproducible(tiny):
    X, y = tiny
    a = TransferClassifier(**FAST, dropout=0.5).fit(X, y).predict_proba(X)
    b = TransferClassifier(**FAST, dropout=0.5).fit(X, y).predict_proba(X)
    c = TransferClassifier(**{**FAST, "random_state": 1}, dropout=0.5).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_fit_does_not_change_the_global_torch_seed(tiny):
    X, y = tiny
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TransferClassifier(**FAST).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_cache_off_gives_the_same_predictions(tiny):
    X, y = tiny
    params = {**FAST, "unfreeze": 2, "finetune_epochs": 2}
    on = TransferClassifier(**params, cache=True).fit(X, y).predict_proba(X)
    off = TransferClassifier(**params, cache=False).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(on, off, atol=1e-5)


def test_pickle_round_trip_gives_identical_probabilities(tiny):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "unfreeze": 1, "finetune_epochs": 1}).fit(X, ["a", "b"] * 8)
    clone_ = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clone_.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(clone_.classes_, clf.classes_)


def test_clone_and_params_follow_sklearn(tiny):
    clf = TransferClassifier(**FAST, hidden_units=(8,))
    params = clf.get_params()
    assert params["hidden_units"] == (8,) and params["backbone"] == "resnet18"
    assert set(params) >= {"backbone", "weights", "hidden_units", "pooling", "dropout",
                           "label_smoothing", "crop", "epochs",
                           "lr", "unfreeze", "finetune_epochs", "finetune_lr", "optimizer",
                           "batch_size", "image_size", "augment", "early_stopping",
                           "validation_fraction", "n_iter_no_change", "class_weight", "cache",
                           "cache_dir", "device", "n_jobs", "random_state", "verbose"}
    fitted = clf.fit(*tiny)
    fresh = clone(fitted)
    assert not hasattr(fresh, "net_") and fresh.get_params() == params
    assert fresh.set_params(lr=0.5).lr == 0.5


def test_grid_search_over_freeze_depth_and_learning_rate(tiny):
    X, y = tiny
    grid = {"unfreeze": [0, 1], "finetune_lr": [1e-3, 1e-2]}  # what acts (phase 1 is solved)
    search = GridSearchCV(TransferClassifier(**{**FAST, "finetune_epochs": 1}), grid, cv=2,
                          n_jobs=1).fit(X, y)
    scores = search.cv_results_["mean_test_score"]
    assert search.best_params_ == search.cv_results_["params"][int(np.argmax(scores))]
    # the refitted model has the searched freeze depth
    best = search.best_estimator_
    assert len(best.net_.module_.blocks) == search.best_params_["unfreeze"]
    assert best.finetune_lr == search.best_params_["finetune_lr"]
    # each score is the mean over the folds of a fit with those parameters
    again = cross_val_score(TransferClassifier(**{**FAST, "finetune_epochs": 1},
                                               **search.best_params_), X, y, cv=2)
    assert len(scores) == 4 and search.best_score_ == pytest.approx(again.mean())
    # (the same search in parallel processes: test_dask's searches on a cluster)


def test_pipelines(tiny):
    X, y = tiny
    probe = make_pipeline(PretrainedFeatures(backbone="resnet18", weights=None, image_size=32),
                          LogisticRegression(max_iter=500))
    assert cross_val_score(probe, X, y, cv=2).mean() >= 0.75
    pipe = make_pipeline(TransferClassifier(**{**FAST, "lr": 1e-2, "epochs": 5}))
    assert pipe.fit(X, y).score(X, y) >= 0.75


def test_early_stopping_and_validation_data(tiny):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "epochs": 30, "early_stopping": True,
                                "validation_fraction": 0.25, "n_iter_no_change": 2,
                                "lr": 1.0, "head_solver": "optimizer"}).fit(X, y)
    assert len(clf.history_) < 30  # stopped early ...
    assert clf.history_[-2:, "valid_loss_best"] == [False, False]  # ... after 2 bad epochs
    clf = TransferClassifier(**FAST, head_solver="optimizer").fit(
        X[:12], y[:12], validation_data=(X[12:], y[12:]))
    assert len(clf.history_[:, "valid_acc"]) == 2
    exact = TransferClassifier(**FAST).fit(X[:12], y[:12], validation_data=(X[12:], y[12:]))
    (valid_loss,) = exact.history_[:, "valid_loss"]  # the exact solve's, on those images
    assert 0 < valid_loss < 5 and exact.history_[0]["phase"] == 1


def test_augment_trains_from_images_and_keeps_the_stem_frozen(tiny, r18_weights):
    X, y = tiny
    clf = TransferClassifier(**{**FAST, "weights": r18_weights, "augment": True,
                                "unfreeze": 1, "finetune_epochs": 1}).fit(X, y)
    assert clf.predict_proba(X).shape == (16, 2)
    reference = torch.load(r18_weights, weights_only=True)
    stem = _augment_stem_state(clf)
    assert "conv1.weight" in stem and "bn1.running_mean" in stem  # block 0 is compared too
    for key, value in stem.items():
        assert torch.equal(value, reference[key]), key


def _augment_stem_state(clf):
    """The frozen blocks' tensors under torchvision's ResNet names (block 0: conv1, bn1)."""
    stem = clf.net_.module_.frozen
    first = {"0": "conv1", "1": "bn1"}
    state = {}
    for i, block in enumerate(stem):
        for k, v in block.state_dict().items():
            head, rest = k.split(".", 1)
            state[f"{first[head]}.{rest}" if i == 0 else f"layer{i}.{k}"] = v
    return state


def test_class_weight_and_optimizers(tiny, r18_weights):
    X, y = tiny
    sgd = TransferClassifier(**FAST, optimizer="sgd").fit(X, y).net_.optimizer_
    assert type(sgd) is torch.optim.SGD and sgd.param_groups[0]["momentum"] == 0.9
    adamw = TransferClassifier(**FAST, optimizer=torch.optim.AdamW).fit(X, y).net_.optimizer_
    assert type(adamw) is torch.optim.AdamW
    weighted = TransferClassifier(**FAST, class_weight={0: 2.0}).fit(X, y)
    assert weighted.net_.criterion_.weight.tolist() == [2.0, 1.0]  # class 1: the default 1
    balanced = TransferClassifier(**FAST, class_weight="balanced").fit(X[:10], [0] * 8 + [1] * 2)
    assert balanced.net_.criterion_.weight.tolist() == pytest.approx([10 / 16, 10 / 4])
    # the head's input: 512 channels pooled, or all 512 x 2 x 2 values of a 64 px input's map
    for pooling, width in (("avg", 512), ("max", 512), ("flatten", 2048)):
        clf = TransferClassifier(**{**FAST, "image_size": 64}, pooling=pooling,
                                 hidden_units=(16,)).fit(X, y)
        linear = [m for m in clf.net_.module_.head if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linear] == [(width, 16), (16, 2)]
    avg, top = (PretrainedFeatures(backbone="resnet18", weights=r18_weights, image_size=64,
                                   pooling=p).fit().transform(X) for p in ("avg", "max"))
    assert (top >= avg - 1e-6).all() and not np.allclose(top, avg)  # the max, not the mean


# -- bad input: each error names the culprit ---------------------------------

def test_bad_fit_inputs(tiny, tmp_path):
    X, y = tiny
    clf = TransferClassifier(**FAST)
    with pytest.raises(ValueError, match="16 images but y has 15"):
        clf.fit(X, y[:15])
    with pytest.raises(ValueError, match="single class"):
        clf.fit(X, np.zeros(16))
    with pytest.raises(ValueError, match="empty"):
        clf.fit([], [])
    with pytest.raises(ValueError, match="missing label"):
        clf.fit(X, [None, "a"] * 8)
    with pytest.raises(ValueError, match="missing label"):
        clf.fit(X, [np.nan, 1.0] * 8)
    with pytest.raises(FileNotFoundError, match="nowhere.jpg"):
        clf.fit([tmp_path / "nowhere.jpg", tmp_path / "x.jpg"], [0, 1])
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    (tmp_path / "bad2.png").write_bytes(b"")
    from PIL import Image
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    with pytest.raises(ImageDecodeError) as info:
        clf.fit([tmp_path / "bad.jpg", tmp_path / "ok.png", tmp_path / "bad2.png"], [0, 1, 0])
    assert "bad.jpg" in str(info.value) and "bad2.png" in str(info.value)
    with pytest.raises(ValueError, match="Unknown or unsupported backbone 'resnet9000'"):
        TransferClassifier(backbone="resnet9000", weights=None).fit(X, y)


@pytest.mark.parametrize("param, value", [
    ("epochs", -1), ("epochs", 0), ("epochs", 2.5), ("lr", 0), ("lr", "fast"),
    ("finetune_lr", -1e-5), ("unfreeze", -1), ("unfreeze", "some"), ("unfreeze", 6),
    ("optimizer", "adamax"), ("optimizer", 3), ("pooling", "min"), ("dropout", 1.5),
    ("dropout", 1.0), ("label_smoothing", -0.1), ("label_smoothing", 1.0), ("crop", "yes"),
    ("hidden_units", (0,)), ("hidden_units", (16, 0)), ("hidden_units", 0),
    ("hidden_units", "128"), ("batch_size", 0),
    ("image_size", -3), ("validation_fraction", 0.9), ("class_weight", "auto"),
    ("device", "gpu"), ("n_jobs", 0), ("augment", "yes"), ("cache", None),
])
def test_invalid_parameters_are_named(tiny, param, value):
    X, y = tiny
    with pytest.raises(ValueError, match=param):
        TransferClassifier(**{**FAST, param: value}).fit(X, y)


@pytest.mark.parametrize("param, value", [
    ("include_top", "yes"), ("crop", "yes"), ("pooling", "min"), ("batch_size", 0),
    ("image_size", 0), ("cache", 1), ("n_jobs", 0), ("weights", 3),
])
def test_pretrained_features_checks_its_parameters(tiny, param, value):
    from sktransfer import PretrainedFeatures

    with pytest.raises(ValueError, match=f"'{param}' parameter of PretrainedFeatures"):
        PretrainedFeatures(**{"weights": None, param: value}).fit(tiny[0])


def test_an_int_hidden_units_is_one_hidden_layer(tiny):
    X, y = tiny
    as_int = TransferClassifier(**FAST, hidden_units=16).fit(X, y)
    as_tuple = TransferClassifier(**FAST, hidden_units=(16,)).fit(X, y)
    assert as_int.hidden_units == 16  # parameters are stored as given
    np.testing.assert_array_equal(as_int.predict_proba(X), as_tuple.predict_proba(X))


def test_parameter_errors_say_what_was_given_and_what_is_allowed(tiny):
    X, y = tiny
    with pytest.raises(ValueError, match=r"'on_error' parameter .* among \{.*\}\. "
                                         r"Got 'ignore' instead") as info:
        TransferClassifier(**FAST, on_error="ignore").fit(X, y)
    assert "'raise'" in str(info.value) and "'skip'" in str(info.value)
    with pytest.raises(ValueError, match=r"'lr' parameter .* range \(0(\.0)?, inf\)\. Got -1"):
        TransferClassifier(**FAST, lr=-1).fit(X, y)


def test_predict_before_fit():
    with pytest.raises(NotFittedError):
        TransferClassifier().predict(np.zeros((1, 8, 8, 3), np.uint8))


def test_the_user_data_is_not_modified(tiny):
    X, y = tiny
    X0, y0 = X.copy(), y.copy()
    TransferClassifier(**FAST).fit(X, y).predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_fits_reuse_the_loaded_backbone_but_never_share_modules(tiny, r18_weights, tmp_path):
    from sktransfer.backbones import building as backbones

    X, y = tiny
    clear_caches()
    kwargs = {**FAST, "weights": r18_weights, "unfreeze": 1, "finetune_epochs": 1,
              "finetune_lr": 1e-2}
    a = TransferClassifier(**kwargs).fit(X, y)
    assert len(backbones._TEMPLATES) == 1  # built and loaded once ...
    b = TransferClassifier(**kwargs).fit(X, y)
    assert len(backbones._TEMPLATES) == 1  # ... and reused
    assert a.extractor_.key == b.extractor_.key
    # each fit has its own modules: phase 2 trained a's last block, not b's
    a_block = a.net_.module_.blocks[0]
    b_block = b.net_.module_.blocks[0]
    assert a_block is not b_block
    assert all(p is not q for p, q in zip(a_block.parameters(), b_block.parameters()))
    before = [p.detach().clone() for p in b_block.parameters()]
    with torch.no_grad():
        for p in a_block.parameters():
            p.add_(1.0)
    assert all(torch.equal(p, q) for p, q in zip(b_block.parameters(), before))
    # same seed, same data: the reused backbone gives the same model as a fresh build
    clear_caches()
    c = TransferClassifier(**kwargs).fit(X, y)
    np.testing.assert_array_equal(b.predict_proba(X), c.predict_proba(X))


def test_a_changed_weights_file_is_loaded_again(tiny, tmp_path):
    from sktransfer.backbones import building as backbones

    X, y = tiny
    path = tmp_path / "w.pt"
    torch.manual_seed(1)
    torch.save(resnet18().state_dict(), path)
    first = TransferClassifier(**{**FAST, "weights": path}).fit(X, y)
    torch.manual_seed(2)
    torch.save(resnet18().state_dict(), path)
    second = TransferClassifier(**{**FAST, "weights": path}).fit(X, y)
    assert first.extractor_.key != second.extractor_.key
    assert len([t for t in backbones._TEMPLATES if t[1] == str(path.resolve())]) == 2


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_heads_dropout_drops_p_and_rescales(p):
    from sktransfer.training.network import Dropout

    x = torch.ones(400, 1001)
    torch.manual_seed(0)
    out = Dropout(p).train()(x)
    assert abs(float((out == 0).float().mean()) - p) < 0.005
    torch.testing.assert_close(out[out != 0], torch.full_like(out[out != 0], 1 / (1 - p)))
    torch.manual_seed(0)
    torch.testing.assert_close(Dropout(p).train()(x), out, rtol=0, atol=0)  # seeded
    assert torch.equal(Dropout(p).eval()(x), x)
    # gradients flow through the kept elements only, scaled like the values
    x = torch.ones(8, 16, requires_grad=True)
    Dropout(p).train()(x).sum().backward()
    grads = x.grad.unique()
    assert all(g == 0 or abs(g - 1 / (1 - p)) < 1e-5 for g in grads.tolist()), grads
