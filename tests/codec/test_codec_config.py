import pytest
from pydantic import ValidationError

from splittune.codec import KINDS, CodecConfig, build_codec


def test_bare_string_means_kind():
    assert CodecConfig.model_validate("none") == CodecConfig(kind="none")
    assert build_codec("fp16").name == "fp16"
    assert build_codec({"kind": "topk", "rho": 0.25}).name == "topk(rho=0.25)"


def test_name_shows_parameters():
    assert CodecConfig(kind="topk+sq+ans", rho=0.2, levels=8).name == "topk+sq+ans(rho=0.2,E=8)"
    assert CodecConfig(kind="topk", rho=0.1, per_token=True).name == "topk(rho=0.1,per_token)"


def test_unknown_kind_lists_the_allowed_ones():
    with pytest.raises(ValidationError) as err:
        CodecConfig(kind="topk+ans")
    assert "kind" in str(err.value)
    assert all(k in str(err.value) for k in KINDS)


@pytest.mark.parametrize("field, value, allowed", [
    ("rho", 0.0, "(0, 1]"), ("rho", -0.5, "(0, 1]"), ("rho", 1.0001, "(0, 1]"), ("rho", float("nan"), "(0, 1]"),
    ("levels", 1, "[2, 65536]"), ("levels", 0, "[2, 65536]"), ("levels", 70000, "[2, 65536]"),
])
def test_out_of_range_fields_are_rejected_naming_field_and_range(field, value, allowed):
    with pytest.raises(ValidationError) as err:
        CodecConfig(kind="topk+sq", **{field: value})
    assert field in str(err.value) and allowed in str(err.value)


def test_bounds_are_inclusive_where_documented():
    CodecConfig(kind="topk+sq", rho=1.0, levels=2)
    CodecConfig(kind="topk+sq", rho=1e-9, levels=65536)


def test_extra_fields_and_bad_positions_are_rejected():
    with pytest.raises(ValidationError, match="lvls"):
        CodecConfig(kind="topk", lvls=3)
    with pytest.raises(ValidationError, match="positions"):
        CodecConfig(kind="topk", positions="rle")
