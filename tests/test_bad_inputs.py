"""The bad-input battery: each case asserts the exception type and that the message
names the culprit (the file, the shape, the parameter)."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image
from sklearn.exceptions import NotFittedError

from sktransfer import TransferClassifier
from sktransfer.inputs.images import ImageDataset, ImageDecodeError, as_images, decode_file
from sktransfer.backbones.weights import WeightsNotFoundError

FAST = dict(backbone="resnet18", weights=None, image_size=32, epochs=1, random_state=0)
RGB = np.random.RandomState(0).randint(0, 256, (4, 24, 24, 3), dtype=np.uint8)
Y = [0, 1, 0, 1]


def png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels (no pixel data to speak of)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def files(tmp_path):
    """A folder of good and bad image files, by name."""
    good = tmp_path / "good.png"
    Image.fromarray(RGB[0]).save(good)
    jpeg = tmp_path / "photo.jpg"
    Image.fromarray(RGB[1]).resize((200, 150)).save(jpeg, quality=95)
    truncated_jpeg = tmp_path / "truncated.jpg"
    truncated_jpeg.write_bytes(jpeg.read_bytes()[:400])
    png = tmp_path / "big.png"
    Image.fromarray(np.random.RandomState(1).randint(0, 256, (120, 120, 3), np.uint8)).save(png)
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(png.read_bytes()[:300])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is text, not an image")
    (tmp_path / "folder.jpg").mkdir()
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    return tmp_path


def fit(X, y=Y, **params):
    return TransferClassifier(**{**FAST, **params}).fit(X, y)


# -- X and y --------------------------------------------------------------------

@pytest.mark.parametrize("X, y, error, match", [
    ([], [], ValueError, "X is empty"),
    (np.zeros((0, 8, 8, 3), np.uint8), [], ValueError, "X is empty"),
    (RGB, [0, 1, 0], ValueError, "4 images but y has 3"),
    (RGB, [0, 0, 0, 0], ValueError, "single class"),
    (RGB, [0, None, 1, 0], ValueError, r"missing label.*\[1\]"),
    (RGB, [0, 1, np.nan, 1], ValueError, r"missing label.*\[2\]"),
    (RGB, None, ValueError, "requires y to be passed"),
    (RGB, [[0, 0]] * 4, ValueError, "no label on any image"),
    (["a.png", RGB[0]], [0, 1], TypeError, "mixes file paths"),
    ([RGB[0], "a.png"], [0, 1], TypeError, "mixes file paths"),
    ("photo.jpg", [0, 1], TypeError, "single str"),
    ([RGB[0], {"not": "an image"}], [0, 1], TypeError, r"X\[1\] is a dict"),
])
def test_bad_X_and_y(X, y, error, match):
    with pytest.raises(error, match=match):
        fit(X, y)


@pytest.mark.parametrize("shape", [(4, 8, 8, 2), (4, 8, 8, 5), (4, 8), (4,),
                                   (2, 4, 8, 8, 3)])
def test_arrays_with_wrong_dimensions_or_channels(shape):
    with pytest.raises(ValueError, match=re_shape(shape)):
        fit(np.zeros(shape, np.uint8), [0, 1] * (shape[0] // 2))


def re_shape(shape):
    return str(shape).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("value, match", [(np.nan, "NaN"), (np.inf, "infinite"),
                                          (-0.5, r"\[-0.5"), (3.0, "3\\]")])
def test_bad_float_pixels(value, match):
    X = RGB.astype(np.float32) / 255
    X[2, 3, 3, 1] = value
    with pytest.raises(ValueError, match=match):
        fit(X)


@pytest.mark.parametrize("dtype", [bool, object, np.complex64, np.uint16, np.int64])
def test_wrong_dtypes(dtype):
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        fit(RGB.astype(dtype))


def test_list_of_arrays_with_a_bad_one_names_its_position():
    with pytest.raises(ValueError, match=r"X\[2\] has shape \(24, 24, 2\)"):
        fit([RGB[0], RGB[1], np.zeros((24, 24, 2), np.uint8), RGB[3]])


# -- files ------------------------------------------------------------------------

@pytest.mark.parametrize("name, error, match", [
    ("missing.jpg", FileNotFoundError, "missing.jpg.*no such file"),
    ("folder.jpg", ValueError, "folder.jpg.*a folder"),
    ("notes.png", ImageDecodeError, "notes.png"),
    ("empty.jpg", ImageDecodeError, "empty.jpg"),
    ("truncated.jpg", ImageDecodeError, "truncated.jpg"),
    ("truncated.png", ImageDecodeError, "truncated.png"),
    ("bomb.png", ImageDecodeError, "bomb.png.*(exceeds|decompression)"),
])
def test_bad_files_in_fit(files, name, error, match):
    with pytest.raises(error, match=match):
        fit([files / "good.png", files / name, files / "photo.jpg", files / "good.png"])


def test_every_bad_file_is_listed_at_once(files):
    names = ["notes.png", "empty.jpg", "truncated.jpg", "truncated.png", "bomb.png"]
    X = [files / "good.png", files / "photo.jpg"] + [files / n for n in names]
    with pytest.raises(ImageDecodeError) as info:
        fit(X, [0, 1] * 3 + [0])
    assert all(n in str(info.value) for n in names) and "5 image(s)" in str(info.value)
    assert sorted(info.value.indices) == [2, 3, 4, 5, 6]


def test_on_error_skip_fits_without_the_bad_files_and_warns(files):
    X = [files / "good.png", files / "notes.png", files / "photo.jpg", files / "empty.jpg",
         files / "good.png", files / "photo.jpg"]
    labels = ["a", "b", "b", "a", "a", "b"]
    with pytest.warns(UserWarning, match="without 2 training image") as caught:
        clf = fit(X, labels, on_error="skip")
    assert "notes.png" in str(caught[0].message) and "empty.jpg" in str(caught[0].message)
    # exactly rows 1 and 3 (and their labels) left out: the same fit as without them
    kept = [0, 2, 4, 5]
    alone = fit([X[i] for i in kept], [labels[i] for i in kept])
    np.testing.assert_array_equal(clf.predict_proba([files / "photo.jpg", files / "good.png"]),
                                  alone.predict_proba([files / "photo.jpg", files / "good.png"]))
    with pytest.warns(UserWarning, match="without 2 training image"):
        fit(X, ["a", "b", "b", "a", "a", "b"], on_error="skip", augment=True)
    # predict never skips: its output must align with X
    with pytest.raises(ImageDecodeError, match="notes.png"):
        clf.predict([files / "good.png", files / "notes.png"])


def test_decompression_bomb_is_refused_before_decoding(files):
    with pytest.raises(ImageDecodeError, match="bomb.png"):
        decode_file(files / "bomb.png")


def test_tiny_and_large_images_work(files, tmp_path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "dot.png")
    big = tmp_path / "large.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 10)).save(big, quality=80)
    ds = ImageDataset([tmp_path / "dot.png", big], _transform())
    assert ds[0].shape == ds[1].shape == (3, 32, 32)
    assert decode_file(big, min_size=64).size[0] < 4000  # decoded at reduced scale
    assert min(decode_file(big, min_size=64).size) >= 64


def _transform():
    from sktransfer.backbones.building import build_backbone

    return build_backbone("resnet18", weights=None).transform(32)


# -- unusual but valid images are decoded correctly --------------------------------------

def test_cmyk_16bit_palette_transparency_and_exif_rotation(tmp_path):
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")  # red
    red = np.asarray(decode_file(tmp_path / "cmyk.jpg")).astype(int)
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60

    sixteen = np.full((8, 8), 65535 // 2, np.uint16)
    Image.fromarray(sixteen).save(tmp_path / "16bit.png")
    gray = np.asarray(decode_file(tmp_path / "16bit.png")).astype(int)
    assert 120 <= gray.mean() <= 135  # half of full scale, not clipped to white

    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 255] + [0, 0, 0] * 255)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "transparent.png", transparency=0)
    white = np.asarray(decode_file(tmp_path / "transparent.png"))
    assert white.min() == 255  # fully transparent -> white background, not blue

    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    shown = decode_file(tmp_path / "rotated.jpg")
    assert shown.size == (20, 40)  # displayed upright: portrait
    top = np.asarray(shown)[:20].mean()
    bottom = np.asarray(shown)[20:].mean()
    assert top > 200 and bottom < 50  # the white half ends up on top


# -- parameters, backbones, fitted state ------------------------------------------------

def test_unknown_backbone_and_missing_weights(fresh_torch_home):
    with pytest.raises(ValueError, match="'resnet9000'"):
        fit(RGB, backbone="resnet9000")
    with pytest.raises(WeightsNotFoundError, match="resnet50-0676ba61.pth"):
        fit(RGB, backbone="resnet50", weights="imagenet")


@pytest.mark.parametrize("param, value", [
    ("epochs", -1), ("unfreeze", 6), ("unfreeze", -2), ("optimizer", "adagrad2"),
    ("batch_size", -8), ("on_error", "ignore"), ("finetune_epochs", -1),
    ("n_iter_no_change", 0),
])
def test_invalid_parameter_values(param, value):
    with pytest.raises(ValueError, match=param):
        fit(RGB, **{param: value})


def test_predict_before_fit_and_with_other_channels():
    with pytest.raises(NotFittedError):
        TransferClassifier().predict(RGB)
    with pytest.raises(NotFittedError):
        TransferClassifier().predict_proba(RGB)
    clf = fit(RGB)
    with pytest.raises(ValueError, match=r"\(4, 24, 24, 2\)"):
        clf.predict(np.zeros((4, 24, 24, 2), np.uint8))
    # grayscale and RGBA are documented to become RGB: they predict
    assert clf.predict(RGB[..., 0]).shape == (4,)
    assert clf.predict(np.zeros((4, 24, 24, 4), np.uint8)).shape == (4,)


def test_failed_fit_keeps_the_previous_model(files):
    clf = fit(RGB)
    before = clf.predict_proba(RGB)
    with pytest.raises(ImageDecodeError):
        clf.fit([files / "good.png", files / "notes.png"], [0, 1])
    np.testing.assert_array_equal(clf.predict_proba(RGB), before)
    fresh = TransferClassifier(**FAST)
    with pytest.raises(ImageDecodeError):
        fresh.fit([files / "good.png", files / "notes.png"], [0, 1])
    assert not hasattr(fresh, "net_") and not hasattr(fresh, "classes_")


def test_user_arrays_are_never_modified():
    X = RGB.copy()
    X.setflags(write=False)  # would raise if anything wrote into it
    clf = fit(X)
    clf.predict(X)
    np.testing.assert_array_equal(X, RGB)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a "non-writable array" warning
        as_images(X).image(0)


def test_a_long_list_in_a_message_says_how_many_it_leaves_out(tmp_path):
    from sktransfer import TransferClassifier

    missing = [str(tmp_path / f"gone{i}.png") for i in range(14)]
    with pytest.raises(FileNotFoundError) as info:
        TransferClassifier(backbone="resnet18", weights=None).fit(missing, [0, 1] * 7)
    message = str(info.value)
    assert message.count("no such file") == 10 and message.endswith("and 4 more.")


# Images on another scale (scikit-learn's digits are 0-16): the message names the range
# found and the division that maps it, never one that makes them darker.
CODES = (RGB.astype(np.float64) * 16 / 255).round()


@pytest.mark.parametrize("X, error, fix", [
    (CODES, ValueError, r"\[0, 16\].*X / 16\)"),
    (CODES.astype(np.int64), TypeError, r"int64 with values in \[0, 16\].*X / 16"),
    (CODES.astype(np.int64) * 10, TypeError, r"\[0, 160\].*X\.astype\(np\.uint8\)"),
    (CODES / 8 - 1, ValueError, r"\[-1, 1\], below 0.*\(X \+ 1\) / 2"),
    (CODES * 4000, ValueError, r"X / 65535"),
])
def test_pixels_on_another_scale_get_the_division_that_fixes_them(X, error, fix):
    with pytest.raises(error, match=fix):
        fit(X)


def test_uint8_images_that_are_nearly_black_are_warned_about_once():
    dark = CODES.astype(np.uint8)
    for X, where in [(dark, "X"), (list(dark), "the arrays of X")]:
        with pytest.warns(UserWarning, match="nearly black") as record:
            fit(X)
        darks = [str(w.message) for w in record if "nearly black" in str(w.message)]
        assert len(darks) == 1 and darks[0].startswith(f"{where}: ")
        assert {w.filename for w in record} == {__file__}  # points at the caller's line
        assert "brightest pixel is 16 of 255" in darks[0] and "X / 16" in darks[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # photos: no warning
        as_images(RGB)
