"""Offline weight resolution: hub cache, shipping packages, hashes, clear errors."""

import shutil

import pytest
import torch
from torch import nn
from torchvision.models import MobileNet_V2_Weights, resnet18

from sktransfer import TransferClassifier
from sktransfer.backbones.torchvision_family import build
from sktransfer.backbones.weights import (
    WeightsNotFoundError, find_weights_file, load_state_dict_file, locate,
)

from conftest import requires_imagenet
from sktransfer import clear_caches  # noqa: E402

V1 = MobileNet_V2_Weights.IMAGENET1K_V1


@requires_imagenet
def test_imagenet_resolves_offline_from_the_installed_package(fresh_torch_home):
    path = find_weights_file(V1)
    assert path.name == "mobilenet_v2-b0353104.pth" and "site-packages" in str(path)
    resolved = locate("mobilenet_v2", "imagenet")
    # torchvision's default (V2) is not on disk here; V1 is, and is used with its own transforms.
    assert resolved.tag == "IMAGENET1K_V1"
    assert resolved.preset.resize_size == 256 and resolved.preset.input_size == 224
    assert resolved.path == path  # the file found, recorded once
    assert resolved.categories[281] == "tabby"
    assert locate("mobilenet_v2", "IMAGENET1K_V1").tag == "IMAGENET1K_V1"


@requires_imagenet
def test_hub_cache_comes_first_and_a_tampered_file_is_refused(fresh_torch_home):
    fresh_torch_home.mkdir(parents=True)
    target = fresh_torch_home / "mobilenet_v2-b0353104.pth"
    shutil.copy(find_weights_file(V1), target)
    assert find_weights_file(V1) == target
    with open(target, "r+b") as fh:  # flip one byte
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match="sha256") as info:
        locate("mobilenet_v2", "imagenet")
    assert str(target) in str(info.value)


def test_missing_weights_name_model_file_folder_and_alternatives(fresh_torch_home):
    with pytest.raises(WeightsNotFoundError) as info:
        TransferClassifier(backbone="resnet50", epochs=1).fit(_two_images(), [0, 1])
    message = str(info.value)
    for part in ("resnet50", "resnet50-0676ba61.pth", str(fresh_torch_home),
                 "weights=None", "weights=PATH"):
        assert part in message
    assert "http" not in message


def _two_images():
    import numpy as np

    return np.zeros((2, 8, 8, 3), dtype=np.uint8)


def test_a_state_dict_path_is_loaded_exactly(tmp_path):
    torch.manual_seed(1)
    model = resnet18()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    resolved = locate("resnet18", tmp_path / "w.pt")
    built = build(resolved)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    loaded = nn.Sequential(*built.blocks).state_dict()
    assert len(loaded) == len(state)
    assert all(torch.equal(a, b) for a, b in zip(loaded.values(), state.values()))
    assert resolved.enum is None and resolved.tag.endswith("w.pt")


def test_bad_weight_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        locate("resnet18", tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_state_dict_file(junk)
    torch.save({"a": 1}, tmp_path / "notensors.pt")
    with pytest.raises(ValueError, match="state_dict"):
        load_state_dict_file(tmp_path / "notensors.pt")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="do not fit"):
        TransferClassifier(backbone="resnet18", weights=tmp_path / "wrong.pt", epochs=1).fit(
            _two_images(), [0, 1])


def test_weights_of_another_model_are_refused():
    with pytest.raises(ValueError, match="resnet18"):
        locate("resnet18", V1)


@requires_imagenet
def test_a_copy_of_torchvisions_file_is_recognised_and_checked(tmp_path):
    target = tmp_path / "mobilenet_v2-b0353104.pth"
    shutil.copy(find_weights_file(V1), target)
    resolved = locate("mobilenet_v2", target)
    assert resolved.enum is V1 and resolved.categories[281] == "tabby"
    data = bytearray(target.read_bytes())
    data[2000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        locate("mobilenet_v2", target)


def test_a_weights_file_is_located_once_per_build(tmp_path, monkeypatch):
    from sktransfer.backbones import building as backbones
    from sktransfer.backbones import weights

    torch.manual_seed(3)
    torch.save(resnet18().state_dict(), tmp_path / "w.pt")
    calls = []
    original = weights._locate_file
    monkeypatch.setattr(weights, "_locate_file", lambda *a: calls.append(a) or original(*a))
    clear_caches()
    bb = backbones.build_backbone("resnet18", tmp_path / "w.pt")
    assert len(calls) == 1  # found once; building reads the file the record names
    assert bb.record.path == tmp_path / "w.pt" and bb.token[1] == str((tmp_path / "w.pt").resolve())
