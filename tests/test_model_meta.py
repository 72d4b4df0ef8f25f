"""The ONNX metadata contract: written once, read by every backend, refused clearly when malformed."""
from __future__ import annotations

import json

import onnx
import pytest

from edgeseg.core.errors import ModelError
from edgeseg.core.model_meta import (DEFAULT_CLASSES, ModelInfo, build_metadata, metadata_of, read_metadata,
                                read_model_info, set_metadata)
from edgeseg.runtime.segmenter import Segmenter
from tiny_model import make_tiny_onnx


def test_written_metadata_reads_back(tmp_path):
    path = make_tiny_onnx(tmp_path / "m.onnx", classes=("bg", "smoke"), size=(96, 128))
    info = read_model_info(path)
    assert info.classes == ("bg", "smoke") and info.input_size == (96, 128) and info.leak_class == 1
    assert info.mean == (0.485, 0.456, 0.406) and info.activation == "softmax"
    assert read_metadata(path)["edgeseg_format"] == "1"


def test_defaults_when_keys_are_missing():
    info = ModelInfo.from_metadata({})
    assert info.classes == DEFAULT_CLASSES and info.input_size == (256, 256) and info.leak_threshold is None
    assert ModelInfo.from_metadata({"leak_threshold": "0.55"}).leak_threshold == 0.55


@pytest.mark.parametrize("key,value", [("classes", "[bg, smoke"), ("input_size", "[256]"), ("mean", "[0.5, 0.5]")])
def test_malformed_metadata_is_a_one_line_model_error(tmp_path, key, value):
    path = make_tiny_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    set_metadata(proto, {**metadata_of(proto), key: value})
    onnx.save(proto, str(path))
    with pytest.raises(ModelError) as err:
        Segmenter(path)
    assert key in str(err.value) and "re-export" in str(err.value) and "\n" not in str(err.value)


def test_build_metadata_is_json_for_the_lists():
    meta = build_metadata(["a", "b"], "sigmoid", (64, 64))
    assert json.loads(meta["classes"]) == ["a", "b"] and json.loads(meta["input_size"]) == [64, 64]
    assert meta["activation"] == "sigmoid" and meta["size_multiple"] == "32"
