"""Every input kind becomes the same preprocessed images; bad input names the culprit."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sktransfer import load_image_folder
from sktransfer.backbones.building import build_backbone
from sktransfer.inputs.images import ImageDataset, ImageDecodeError, as_images

TRANSFORM = build_backbone("mobilenet_v2", weights=None).transform(32)


def preprocessed(X):
    ds = ImageDataset(X, TRANSFORM)
    return torch.stack([ds[i] for i in range(len(ds))])


def test_every_input_kind_gives_the_same_tensors(tmp_path):
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (3, 36, 44, 3), dtype=np.uint8)
    paths = []
    for i, img in enumerate(X):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(img).save(paths[-1])
    reference = preprocessed(X)
    assert reference.shape == (3, 3, 32, 32)
    for variant in (
        [str(p) for p in paths],              # str paths
        paths,                                # PathLike
        np.array([str(p) for p in paths]),    # numpy array of str
        np.array(paths, dtype=object),        # numpy object array of PathLike
        [Image.fromarray(x) for x in X],      # PIL images
        list(X),                              # list of single-image arrays
        [p.read_bytes() for p in paths],      # encoded files' bytes
        [bytearray(p.read_bytes()) for p in paths],
    ):
        torch.testing.assert_close(preprocessed(variant), reference, atol=0, rtol=0)
    # Floats are resized without rounding to 8 bits: equal to within one grey level.
    floats = preprocessed(X.astype(np.float32) / 255)
    torch.testing.assert_close(floats, reference, atol=1 / 255 / 0.224, rtol=0)


def test_grayscale_forms_are_repeated_to_rgb():
    gray = np.random.RandomState(1).randint(0, 256, (2, 32, 32), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    expected = preprocessed(rgb)
    for variant in (gray, gray[..., None], [Image.fromarray(g) for g in gray]):
        torch.testing.assert_close(preprocessed(variant), expected, atol=1e-5, rtol=0)


def test_rgba_and_palette_images_become_rgb(tmp_path):
    rgba = Image.new("RGBA", (20, 30), (255, 0, 0, 255))
    palette = Image.new("RGB", (50, 10), (0, 0, 255)).convert("P")
    rgba.save(tmp_path / "a.png")
    palette.save(tmp_path / "p.png")
    out = preprocessed([tmp_path / "a.png", tmp_path / "p.png"])
    assert out.shape == (2, 3, 32, 32)
    # red stays red, blue stays blue after normalisation
    assert out[0, 0].mean() > out[0, 2].mean() and out[1, 2].mean() > out[1, 0].mean()
    torch.testing.assert_close(preprocessed([rgba, palette]), out)


def test_paths_are_decoded_lazily(image_folder):
    paths, _ = load_image_folder(image_folder)
    source = as_images(paths)
    assert source.kind == "paths" and all(isinstance(p, str) for p in source.items)
    ds = ImageDataset(source, TRANSFORM)
    assert ds[5].shape == (3, 32, 32)


def test_load_image_folder(image_folder):
    paths, labels = load_image_folder(image_folder)
    assert len(paths) == 12  # notes.txt is ignored
    assert sorted(set(labels)) == ["class_0", "class_1"]
    assert all(Path(p).parent.name == label for p, label in zip(paths, labels))
    assert preprocessed(paths).shape == (12, 3, 32, 32)


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No images"):
        load_image_folder(tmp_path / "empty")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a folder"):
        load_image_folder(tmp_path / "file.png")


def test_missing_files_are_all_listed(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    paths = [tmp_path / "ok.png", tmp_path / "gone1.jpg", tmp_path / "gone2.jpg"]
    with pytest.raises(FileNotFoundError) as info:
        as_images(paths)
    assert "gone1.jpg" in str(info.value) and "gone2.jpg" in str(info.value)
    assert "2 of 3" in str(info.value)
    with pytest.raises(ValueError, match="folder"):
        as_images([tmp_path])


def test_unreadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        preprocessed([bad])
    with pytest.raises(ImageDecodeError, match=r"X\[0\] \(encoded image, 30 bytes\)"):
        preprocessed([bad.read_bytes()])


def test_encoded_bytes_share_their_files_content_key(tmp_path):
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(tmp_path / "x.png")
    files, encoded = as_images([tmp_path / "x.png"]), as_images([(tmp_path / "x.png").read_bytes()])
    assert encoded.kind == "encoded"
    assert encoded.content_key(0) == files.content_key(0)


@pytest.mark.parametrize("X, error, match", [
    ([], ValueError, "empty"),
    (np.zeros((0, 8, 8, 3), np.uint8), ValueError, "empty"),
    (np.zeros((2, 8, 8, 2), np.uint8), ValueError, r"\(2, 8, 8, 2\)"),
    (np.zeros((8, 8), np.uint8), ValueError, r"\(8, 8\)"),
    (np.zeros((2, 8, 8, 3), bool), TypeError, "bool"),
    (np.full((2, 8, 8, 3), 255.0), ValueError, "0, 1"),
    (np.full((2, 8, 8, 3), np.nan), ValueError, "NaN"),
    ("cat.jpg", TypeError, "single str"),
    (["a.png", np.zeros((8, 8, 3), np.uint8)], TypeError, "mixes"),
    ([np.zeros((8, 8, 3), np.uint8), 3], TypeError, r"X\[1\]"),
    ([b"\x89PNG", "a.png"], TypeError, r"X\[0\] is a bytes.*encoded image"),
    (42, TypeError, "int"),
])
def test_bad_inputs_name_the_problem(X, error, match):
    with pytest.raises(error, match=match):
        as_images(X)


def test_content_keys_follow_content(tmp_path):
    a = np.zeros((2, 8, 8, 3), np.uint8)
    a[1] = 1
    src = as_images(a)
    assert src.content_key(0) != src.content_key(1)
    Image.fromarray(a[1]).save(tmp_path / "x.png")
    os.link(tmp_path / "x.png", tmp_path / "y.png")
    files = as_images([tmp_path / "x.png", tmp_path / "y.png"])
    assert files.content_key(0) == files.content_key(1)


def test_a_files_digest_is_read_once_and_again_after_any_write(tmp_path, monkeypatch):
    import builtins

    from sktransfer.inputs import images as data

    path = tmp_path / "x.png"  # the digest reads bytes: they need not decode
    path.write_bytes(b"a" * 100)
    opened = []

    def counting_open(file, *args, **kwargs):
        opened.append(file)
        return builtins.open(file, *args, **kwargs)
    monkeypatch.setattr(data, "open", counting_open, raising=False)
    first = as_images([path]).content_key(0)
    assert as_images([str(path)]).content_key(0) == first  # the same file: not read again
    assert len(opened) == 1
    # the same size, its modification time set back: the change time still moved
    before = path.stat()
    path.write_bytes(b"b" * 100)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert as_images([path]).content_key(0) != first
    assert len(opened) == 2
    path.unlink()
    with pytest.raises(ImageDecodeError, match="cannot read image file"):
        data.file_digest(path)


def test_a_dataframe_column_of_paths_is_the_same_as_the_list(image_folder):
    import pandas as pd

    from sktransfer import TransferClassifier

    paths, labels = load_image_folder(image_folder)
    df = pd.DataFrame({"photo": paths, "price": range(len(paths))})
    kwargs = dict(backbone="resnet18", weights=None, image_size=32, epochs=2, random_state=0)
    as_list = TransferClassifier(**kwargs).fit(paths, labels).predict_proba(paths)
    for column in (df[["photo"]], df["photo"], df[["photo"]].to_numpy()):
        clf = TransferClassifier(**kwargs).fit(column, labels)
        np.testing.assert_array_equal(clf.predict_proba(column), as_list)
    with pytest.raises(ValueError, match=r"2 columns \(photo, price\); pass its image column"):
        TransferClassifier(**kwargs).fit(df, labels)


def test_files_are_grouped_by_their_bytes_not_their_names(tmp_path):
    from sktransfer.inputs.demo_data import distinct_files
    from sktransfer.inputs.images import content_groups

    for name, data in [("a.png", b"one"), ("b.png", b"two"), ("c.png", b"one"),
                       ("d.png", b"two"), ("e.png", b"three")]:
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / n) for n in ("b.png", "a.png", "missing.png", "c.png", "d.png",
                                         "missing.png", "e.png")]
    # numbered by first appearance; an unreadable file is a group of its own, each time
    np.testing.assert_array_equal(content_groups(paths), [0, 1, 2, 1, 0, 3, 4])
    readable = [p for p in paths if "missing" not in p]
    assert distinct_files(readable) == [readable[0], readable[1], readable[-1]]
