"""Property-based tests: random bytes and random arrays give only documented exceptions."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sktransfer.inputs.images import ImageDecodeError, as_images, decode_file

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (5, 4), (1, 2, 3)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()


def assert_decodes_or_names_the_file(path):
    """Either an RGB image comes out, or our documented error naming the file."""
    try:
        img = decode_file(path)
    except ImageDecodeError as exc:
        assert path.name in str(exc)
    else:
        assert img.mode == "RGB"


@SETTINGS
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_raise_image_decode_error(tmp_path, blob):
    path = tmp_path / "x.img"
    path.write_bytes(blob)
    assert_decodes_or_names_the_file(path)


@SETTINGS
@given(st.integers(0, len(PNG)), st.binary(max_size=64), st.integers(0, len(PNG)))
def test_damaged_png_decodes_or_raises_image_decode_error(tmp_path, cut, junk, where):
    path = tmp_path / "damaged.png"
    path.write_bytes(PNG[:where] + junk + PNG[where:cut] if where < cut else PNG[:cut] + junk)
    assert_decodes_or_names_the_file(path)


dtypes = st.sampled_from([np.uint8, np.float32, np.float64, np.int16, np.uint16, bool,
                          np.complex64, object])
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=5).map(tuple)


@SETTINGS
@given(shapes, dtypes, st.floats(allow_nan=True, allow_infinity=True, width=32))
def test_random_arrays_are_accepted_or_refused_clearly(shape, dtype, fill):
    try:
        X = np.full(shape, fill if dtype not in (np.uint8, np.int16, np.uint16, bool)
                    else 1, dtype=dtype)
    except (OverflowError, ValueError):
        return
    try:
        images = as_images(X)
    except (ValueError, TypeError) as exc:
        assert str(exc)
    else:
        assert len(images) == shape[0] > 0
        out = images.image(0)
        assert out.shape[0] == 3
