"""Turn X (paths, arrays, PIL images) into images, decoded lazily, with clear errors.

Accepted inputs, everywhere in the package:

- a list, tuple, pandas Series or 1-d array of file paths (``str`` or ``os.PathLike``);
  images are decoded one at a time, when needed, and may have different sizes;
- a one-column pandas DataFrame, or a 2-d object array of one column, of paths or
  PIL images (what ``ColumnTransformer`` hands a transformer);
- a numeric array ``(n, h, w, 3)``, ``(n, h, w, 4)`` (RGBA), ``(n, h, w, 1)`` or
  ``(n, h, w)`` (grayscale), ``uint8`` in [0, 255] or floating point in [0, 1];
- a list of PIL images or of single-image arrays ``(h, w[, c])`` of any sizes;
- a list of encoded image files as ``bytes`` (what a web request, a database or an
  MLflow column of type binary holds), decoded as their files would be.

Grayscale, RGBA, palette, CMYK and 16-bit images become RGB; EXIF rotation is applied.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from ..utils.text import listed
from ..utils.user_warnings import warn_user


class ImageDecodeError(ValueError):
    """Images could not be read or decoded; the message names every file.

    Attributes
    ----------
    indices : list of int
        Positions in X of the unreadable images (when known).
    """

    def __init__(self, message, indices=()):
        super().__init__(message)
        self.indices = list(indices)

    @classmethod
    def listing(cls, errors):
        """One error for ``[(index, message), ...]``, listing them all."""
        shown = "\n  ".join(msg for _, msg in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        return cls(f"{len(errors)} image(s) could not be read:\n  {shown}{more}",
                   [i for i, _ in errors])


def find_unreadable(images):
    """Decode every image once; return ``[(index, message), ...]`` of those that fail."""
    bad = []
    for i in range(len(images)):
        try:
            images.image(i)
        except ImageDecodeError as exc:
            bad.append((i, str(exc)))
    return bad


def _describe(x):
    return type(x).__name__


def _check_single_array(arr, where):
    """Validate one image's array ``(h, w)``, ``(h, w, 1)``, ``(h, w, 3)`` or ``(h, w, 4)``."""
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in CHANNELS):
        return
    raise ValueError(
        f"{where} has shape {arr.shape}; an image array must be (h, w), (h, w, 1), (h, w, 3) "
        "or (h, w, 4) (channels last: gray, RGB or RGBA)."
    )


#: Where the brightest pixel of a set of uint8 images sits when they are photos; far
#: below it, they are codes on another scale (digits' 0-16) shown as nearly black.
DARK_MAXIMUM = 64
#: Scales float and integer images come in, for the division a message suggests.
_WHITE_LEVELS = (1, 15, 16, 100, 255, 1023, 4095, 65535)


def _white_level(hi):
    """The usual white level (16 for digits, 255, 65535, ...) at or above ``hi``."""
    return next((level for level in _WHITE_LEVELS if hi <= level), hi)


def _shifted(lo, hi):
    """The expression that maps ``[lo, hi]`` onto [0, 1], as a user would type it."""
    shift = f"X + {-lo:g}" if lo < 0 else f"X - {lo:g}"
    return f"({shift}) / {hi - lo or 1:g}"


def _check_pixels(arr, where):
    """Check dtype and value range of image pixels; the brightest pixel of uint8 images.

    Returns
    -------
    int or None
        The maximum of a uint8 array (for :func:`warn_if_dark`), None for floats.
    """
    if arr.dtype == np.uint8:
        return int(arr.max()) if arr.size else None
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if 0 <= lo and hi <= 255:
            fix = "X.astype(np.uint8)" if hi > DARK_MAXIMUM else f"X / {_white_level(hi)}"
        else:
            fix = f"floats in [0, 1], e.g. {_shifted(lo, hi)}"
        raise TypeError(
            f"{where} has dtype {arr.dtype} with values in [{lo}, {hi}]; pass uint8 in "
            f"[0, 255] or floats in [0, 1]: here {fix}.")
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{where} has dtype {arr.dtype}; pass uint8 in [0, 255] or floats in [0, 1]."
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{where} contains NaN or infinite pixel values.")
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0.0 and hi > 1.0:
        level = _white_level(hi)
        raise ValueError(
            f"{where} has float pixels in [{lo:g}, {hi:g}]; float images must be in [0, 1] "
            f"with 1 as white: divide by the value that is white on your scale (here "
            f"probably X / {level:g}).")
    if lo < 0.0:
        raise ValueError(
            f"{where} has float pixels in [{lo:g}, {hi:g}], below 0 (already normalised?); "
            "pass the images before normalisation, in [0, 1] (the backbone's own "
            f"normalisation is applied), e.g. {_shifted(lo, hi)}.")
    return None


def warn_if_dark(hi, where):
    """Warn (once per call) that uint8 images whose brightest pixel is ``hi`` look black."""
    if hi is not None and 0 < hi < DARK_MAXIMUM:  # all 0 is a black image: nothing to rescale
        level = _white_level(hi)
        warn_user(
            f"{where}: uint8 images whose brightest pixel is {hi} of 255; the network "
            f"sees them nearly black. If {hi} is white on your scale, pass floats in [0, 1] "
            f"(X / {level}) or rescale to uint8 ((X * (255 / {level})).astype(np.uint8)).")


#: Channels an image array may have (last): gray, RGB, RGBA.
CHANNELS = (1, 3, 4)
#: An encoded image file's bytes, as an item of X.
ENCODED = (bytes, bytearray, memoryview)


def _composite_on_white(arr):
    """An RGBA array ``(h, w, 4)`` composited onto white, as :func:`to_rgb` does a file's."""
    if arr.dtype == np.uint8:  # PIL's own compositing: identical to the same PNG's
        return np.asarray(to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA")))
    alpha = arr[..., 3:].astype(np.float32)
    return arr[..., :3].astype(np.float32) * alpha + (1.0 - alpha)


def _array_to_tensor(arr):
    """``(h, w[, c])`` uint8/float array -> ``(3, h, w)`` tensor of the same kind."""
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = _composite_on_white(arr)
    t = torch.from_numpy(np.array(arr, order="C"))  # a writable copy: never alias user data
    if t.ndim == 2:
        t = t.unsqueeze(-1)
    t = t.permute(2, 0, 1)
    if t.shape[0] == 1:
        t = t.expand(3, -1, -1)
    return t if t.dtype == torch.uint8 else t.to(torch.float32)


def to_rgb(img):
    """Convert a PIL image of any mode to RGB (EXIF rotation applied, 16-bit scaled)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # PIL's own conversion clips 16-bit values at 255; scale instead.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparency on white, as a viewer shows it.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def decode_file(path, min_size=None, name=None):
    """Read an image file into an RGB PIL image.

    Parameters
    ----------
    path : str, os.PathLike or file object
    min_size : int, optional
        The shorter side the caller will resize to: a large JPEG is then
        decoded at a reduced scale (Pillow's draft mode), several times
        faster, never below ``min_size``.
    name : str, optional
        What the error calls the image (the path by default).

    Raises
    ------
    ImageDecodeError
        Naming the file, when it is not a readable image.
    """
    try:
        with Image.open(path) as img:
            if min_size and img.format == "JPEG" and img.mode in ("RGB", "L"):
                img.draft(img.mode, (min_size, min_size))
            img.load()
            return to_rgb(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:
        reason = str(exc) or type(exc).__name__
        name = name or f"image file {os.fspath(path)!r}"
        raise ImageDecodeError(f"cannot read {name}: {reason}") from None


# (path, device, inode, size, modification and change times in ns) -> digest of the bytes
_FILE_DIGESTS = OrderedDict()
_FILE_DIGESTS_MAX = 100_000


def forget_digests():
    """Forget the digests of files read so far (:func:`sktransfer.clear_caches`)."""
    _FILE_DIGESTS.clear()


def file_digest(path):
    """The digest of a file's bytes, read once per process while the file is unchanged.

    A search fits the same files once per fold and grid point; their bytes
    are hashed again only when the file's size or its modification or change
    time is not what it was (a write always moves the change time, which no
    one can set back), as ``git`` and ``make`` decide what changed.

    Raises
    ------
    ImageDecodeError
        The file cannot be read.
    """
    try:
        st = os.stat(path)
        token = (os.fspath(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                 st.st_ctime_ns)
        digest = _FILE_DIGESTS.get(token)
        if digest is None:
            h = hashlib.blake2b(digest_size=16)
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            digest = _FILE_DIGESTS[token] = h.hexdigest()
            while len(_FILE_DIGESTS) > _FILE_DIGESTS_MAX:
                _FILE_DIGESTS.popitem(last=False)
    except OSError as exc:
        raise ImageDecodeError(f"cannot read image file {path!r}: {exc}") from None
    return digest


def content_groups(paths):
    """Each file's group by content: files with the same bytes share one.

    Groups are numbered in the order of their first file; a file that
    cannot be read is a group of its own (``fit`` reports it, with the
    others).  Splits keep a group on one side, so that no copy of a
    training image is scored, and one file per group is a set without
    copies.

    Parameters
    ----------
    paths : sequence of path-like

    Returns
    -------
    ndarray of int, shape (len(paths),)
    """
    first, groups = {}, []
    for i, path in enumerate(paths):
        try:
            key = file_digest(path)
        except ImageDecodeError:
            key = ("unreadable", i)
        groups.append(first.setdefault(key, len(first)))
    return np.asarray(groups, dtype=np.int64)


class ImageSource:
    """Validated images of one kind; nothing is decoded until asked for.

    Build it with :func:`as_images`.

    Attributes
    ----------
    kind : {"paths", "encoded", "array", "objects"}
        File paths, encoded files' bytes, one numeric array, or a list of PIL
        images / arrays.
    """

    def __init__(self, items, kind):
        self.items = items
        self.kind = kind

    def __len__(self):
        return len(self.items)

    def image(self, i, min_size=None):
        """Item ``i`` as a ``(3, h, w)`` RGB tensor (uint8, or float32 in [0, 1]).

        Every kind goes through the same tensor preprocessing afterwards, so
        a file, its PIL image and its uint8 array give identical inputs
        (large JPEG files excepted when ``min_size`` is given: see
        :func:`decode_file`).
        """
        item = self.items[i]
        if self.kind == "paths":
            item = decode_file(item, min_size)
        elif self.kind == "encoded":
            item = decode_file(io.BytesIO(item), min_size,
                               name=f"X[{i}] (encoded image, {len(item)} bytes)")
        elif isinstance(item, Image.Image):
            item = to_rgb(item)
        return _array_to_tensor(np.asarray(item))

    def content_key(self, i):
        """A digest of item ``i``'s content (file bytes, or pixels with shape and dtype)."""
        item = self.items[i]
        if self.kind == "paths":
            return file_digest(item)
        h = hashlib.blake2b(digest_size=16)
        if self.kind == "encoded":  # as its file's digest: the cache is shared with paths
            h.update(item)
            return h.hexdigest()
        if isinstance(item, Image.Image):
            h.update(f"{item.mode}{item.size}".encode())
            h.update(item.tobytes())
        else:
            h.update(f"{item.dtype}{item.shape}".encode())
            h.update(np.ascontiguousarray(item).tobytes())
        return h.hexdigest()

    def subset(self, indices):
        """The images at ``indices``, as a new :class:`ImageSource`."""
        if isinstance(self.items, np.ndarray):
            return ImageSource(self.items[np.asarray(indices, dtype=np.intp)], self.kind)
        return ImageSource([self.items[i] for i in indices], self.kind)


def _as_path(x):
    return os.fspath(x) if isinstance(x, (str, os.PathLike)) else None


def as_images(X):
    """Validate X and wrap it as an :class:`ImageSource`.

    Parameters
    ----------
    X : see the module docstring.

    Returns
    -------
    ImageSource

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        Naming the problem: empty X, a bad shape or dtype, mixed kinds, or
        every missing file.
    """
    if isinstance(X, ImageSource):
        return X
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"X is a sparse {type(X).__name__}: sparse input is not supported. Images are a "
            "list of paths or PIL images, or an array (n, h, w[, c])."
        )
    X = _one_column(X)
    if isinstance(X, np.ndarray) and X.dtype != object and not np.issubdtype(X.dtype, np.str_):
        if X.ndim not in (3, 4) or (X.ndim == 4 and X.shape[-1] not in CHANNELS):
            raise ValueError(
                f"X has shape {X.shape}; an image array must be (n, h, w), (n, h, w, 1), "
                "(n, h, w, 3) or (n, h, w, 4) (channels last: gray, RGB or RGBA)."
            )
        if X.shape[0] == 0:
            raise ValueError("X is empty: need at least one image.")
        if min(X.shape[1:3]) == 0:
            raise ValueError(f"X has shape {X.shape}: images with no pixels.")
        warn_if_dark(_check_pixels(X, "X"), "X")
        return ImageSource(X, "array")
    if isinstance(X, (str, os.PathLike, Image.Image)):
        raise TypeError(
            "X must be a collection of images (a list of paths, a list of PIL images or an "
            f"array of shape (n, h, w[, c])), got a single {_describe(X)}; wrap it in a list."
        )
    try:
        items = list(X)
    except TypeError:
        raise TypeError(
            f"X must be a list of image paths, a list of PIL images or an image array; "
            f"got {_describe(X)}."
        ) from None
    if not items:
        raise ValueError("X is empty: need at least one image.")
    if all(isinstance(x, ENCODED) for x in items):
        return ImageSource([bytes(x) for x in items], "encoded")
    paths = [_as_path(x) for x in items]
    if all(p is not None for p in paths):
        _check_files(paths)
        return ImageSource(paths, "paths")
    brightest = []
    for i, x in enumerate(items):
        if paths[i] is not None:
            first = next(j for j, p in enumerate(paths) if p is None)
            raise TypeError(
                f"X mixes file paths (X[{i}]) with other objects (X[{first}] is "
                f"{_describe(items[first])}); pass one kind of input."
            )
        if isinstance(x, np.ndarray):
            _check_single_array(x, f"X[{i}]")
            brightest.append(_check_pixels(x, f"X[{i}]"))
        elif not isinstance(x, Image.Image):
            raise TypeError(
                f"X[{i}] is a {_describe(x)}; expected a file path, a PIL image, an image "
                "array or an encoded image's bytes."
            )
    if brightest and None not in brightest:  # every image a uint8 array
        warn_if_dark(max(brightest), "the arrays of X")
    return ImageSource(items, "objects")


def _one_column(X):
    """The images of a one-column table (DataFrame, or 2-d object array); X otherwise."""
    if hasattr(X, "iloc") and getattr(X, "ndim", 1) == 2:  # a pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"X is a table with {X.shape[1]} columns ({listed(X.columns, 5)}); pass its "
                "image column alone, e.g. df['photo'] or df[['photo']], or select it in a "
                "ColumnTransformer."
            )
        return X.iloc[:, 0]
    if isinstance(X, np.ndarray) and X.ndim == 2 and (X.dtype == object
                                                       or np.issubdtype(X.dtype, np.str_)):
        if X.shape[1] != 1:
            raise ValueError(
                f"X is a 2-d array of shape {X.shape}; a table of images must have one column "
                "(of paths or PIL images)."
            )
        return X[:, 0]
    return X


def _check_files(paths):
    missing = [p for p in paths if not os.path.exists(p)]
    folders = [p for p in paths if os.path.isdir(p)]
    problems = [f"{p!r} (no such file)" for p in missing]
    problems += [f"{p!r} (a folder, not an image file)" for p in folders]
    if problems:
        cls = FileNotFoundError if missing else ValueError
        raise cls(f"{len(problems)} of {len(paths)} image paths cannot be used: "
                  f"{listed(problems, sep='; ')}.")


class ImageDataset(Dataset):
    """A torch ``Dataset`` of preprocessed image tensors ``(3, s, s)``.

    Parameters
    ----------
    images : ImageSource or any X accepted by :func:`as_images`
    transform : callable
        ``(3, h, w)`` tensor -> float tensor (the backbone's
        preprocessing, e.g. :meth:`sktransfer.backbones.Backbone.transform`).
    """

    def __init__(self, images, transform):
        self.images = as_images(images)
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images.image(i))


IMAGE_EXTENSIONS = frozenset(
    ext.lower() for ext in Image.registered_extensions()
    if ext.lower() not in {".pdf", ".eps", ".ps"}  # documents, not photos
)


def is_image_file(path):
    """Whether ``path`` is a visible file with an extension Pillow can read."""
    path = Path(path)
    return (path.is_file() and not path.name.startswith(".")
            and path.suffix.lower() in IMAGE_EXTENSIONS)


def load_image_folder(root):
    """List the images of a ``root/<class>/<image>`` folder tree.

    Parameters
    ----------
    root : str or os.PathLike
        A folder with one sub-folder per class.  Files whose extension Pillow
        does not know, and hidden files, are ignored.

    Returns
    -------
    paths : list of str
        Image paths, classes interleaved: the first image of each class (in
        class-name order), then the second of each, and so on (each class's
        files in name order).  So ``paths[:k]`` holds every class as soon as
        ``k`` reaches the number of classes, and the order is the same on
        every machine.
    labels : numpy.ndarray of str
        The class (sub-folder name) of each path.

    Raises
    ------
    FileNotFoundError
        When ``root`` does not exist.
    ValueError
        When ``root`` is not a folder or holds no class folder with images.
    """
    root = Path(os.fspath(root))
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder; expected root/<class>/<image> layout.")
    per_class = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = [str(f) for f in sorted(class_dir.iterdir()) if is_image_file(f)]
        if files:
            per_class.append((class_dir.name, files))
    paths, labels = [], []
    for rank in range(max((len(files) for _, files in per_class), default=0)):
        for name, files in per_class:
            if rank < len(files):
                paths.append(files[rank])
                labels.append(name)
    if not paths:
        raise ValueError(
            f"No images found under {root}; expected root/<class>/<image> layout "
            "(one sub-folder per class)."
        )
    return paths, np.asarray(labels)
