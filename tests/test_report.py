"""What users read: the report table (golden files), JSON, and the report's data."""

import json
import os
import pathlib

import pytest

import lazyfx
from lazyfx.demo import Net

GOLDEN = pathlib.Path(__file__).parent / "golden"
ROOT = pathlib.Path(__file__).parent.parent


@pytest.mark.parametrize("name, spec", [("demo_concrete", ("B", 3, 32, 32)), ("demo_symbolic", ("B", 3, "H", "W"))])
def test_report_table_is_golden(name, spec, monkeypatch):
    monkeypatch.chdir(ROOT)  # diagnostics print paths relative to the working directory
    text = str(lazyfx.infer(Net(), spec)) + "\n"
    if os.environ.get("LAZYFX_UPDATE_GOLDEN"):
        (GOLDEN / f"{name}.txt").write_text(text)
    assert text == (GOLDEN / f"{name}.txt").read_text()


def test_report_data():
    report = lazyfx.infer(Net(), ("B", 3, 32, 32))
    assert report.output_shape[1] == 10 and str(report.output_shape[0]) == "B"
    head = report.lazy["head"]
    assert head.eager_class == "Linear" and head.resolution.arguments == {"in_features": 2304}
    assert head.resolution.parameter_shapes == {"weight": (10, 2304), "bias": (10,)}
    assert list(report.lazy) == ["features.0", "features.1", "features.3", "head"]  # first-call order
    assert report.domain.contains(B=1) and str(report.domain) == "all positive sizes"
    assert not report.unresolved and not report.diagnostics


def test_report_json_round_trip():
    report = lazyfx.infer(Net(), ("B", 3, "H", "W"))
    data = json.loads(report.to_json())
    assert data == report.to_dict()
    assert data["output"] == {"shape": ["B", 10], "dtype": "float32"}
    head = next(m for m in data["lazy_modules"] if m["path"] == "head")
    assert head["arguments"] == {"in_features": "64*((H - 9)//4 + 1)*((W - 9)//4 + 1)"}
    assert head["resolved"] is False and head["depends_on"] == ["H", "W"]
    assert data["domain"]["conditions"] == ["H >= 9", "W >= 9"]
    assert data["diagnostics"][0]["code"] == "LFX040"
    conv = next(n for n in data["nodes"] if n["name"] == "features_0")
    assert conv["output"]["shape"] == ["B", 32, "(H - 3)//2 + 1", "(W - 3)//2 + 1"]
    assert conv["module_path"] == "features.0" and conv["file"].endswith("demo.py") and conv["line"] == 24


def test_dtype_shows_in_the_report():
    import torch.nn as nn

    report = lazyfx.infer(nn.Sequential(nn.Embedding(10, 4), nn.LazyLinear(2)), "B,T:int64")
    assert str(report.inputs["input"]) == "(B, T) int64"
    assert "(B, T, 4)" in report.table()
