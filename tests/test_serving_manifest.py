"""`[serving]` in workbench.toml: the predict function `workbench serve` calls."""

from __future__ import annotations

import pytest

from workbench.core.errors import ManifestError
from workbench.core.manifest import parse_manifest

BASE = '[project]\nname = "p"\n[stages.train]\ncommand = "python train.py"\n'


def test_serving_predict_is_read():
    manifest = parse_manifest(BASE + '[serving]\npredict = "stages/predict.py:predict"\n')
    assert manifest.serving.predict == "stages/predict.py:predict"
    assert parse_manifest(BASE).serving.predict is None


@pytest.mark.parametrize("value, words", [
    ("stages/predict.py", "must be FILE.py:FUNCTION"),
    ("stages/predict.txt:predict", "must be FILE.py:FUNCTION"),
    ("../predict.py:predict", "inside the project"),
])
def test_a_bad_serving_predict_names_the_key(value, words):
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + f'[serving]\npredict = "{value}"\n')
    assert "serving.predict" in str(info.value) and words in str(info.value)


def test_an_unknown_serving_key_is_an_error():
    with pytest.raises(ManifestError, match="serving.canery"):
        parse_manifest(BASE + '[serving]\ncanery = 0.1\n')


def test_serving_contract_policy_is_read_and_defaults_to_report():
    assert parse_manifest(BASE).serving.contract == "report"
    assert parse_manifest(BASE + '[serving]\ncontract = "reject"\n').serving.contract == "reject"


@pytest.mark.parametrize("value, words", [('"warn"', "must be one of report, reject"), ("true", "must be")])
def test_a_bad_serving_contract_policy_names_the_key(value, words):
    with pytest.raises(ManifestError) as info:
        parse_manifest(BASE + f"[serving]\ncontract = {value}\n")
    assert "serving.contract" in str(info.value) and words in str(info.value), str(info.value)
