"""The one ``type:`` rule: unknown names and arguments fail naming the key, even behind ``**kwargs``."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import pytest
from basicsr.utils.registry import ARCH_REGISTRY

from kit.registry import OptionsKeyError, build_from_registry, check_spec


def test_typo_behind_kwargs_is_refused() -> None:
    # BasicSR's SwinIR takes **kwargs and would silently ignore 'upscal'
    with pytest.raises(OptionsKeyError, match="network_g: SwinIR has no argument 'upscal' \\(did you mean 'upscale'"):
        check_spec(ARCH_REGISTRY, {"type": "SwinIR", "upscal": 4}, "network_g")


def test_suffix_names_missing_and_good_specs() -> None:
    assert check_spec(ARCH_REGISTRY, {"type": "SRVGGNetCompact", "num_feat": 8}, "n").__name__ == "SRVGGNetCompact"
    with pytest.raises(OptionsKeyError, match="RRDBNet needs num_in_ch, num_out_ch"):
        check_spec(ARCH_REGISTRY, {"type": "RRDBNet"}, "network_t")
    with pytest.raises(OptionsKeyError, match="expected a mapping with 'type:'"):
        build_from_registry(ARCH_REGISTRY, {"num_feat": 8}, "network_g")


def test_a_basicsr_suffix_is_used_and_logged(caplog) -> None:
    from kit.registry import build_network

    with caplog.at_level("INFO", logger="basicsr"):
        net = build_network({"type": "SRVGGNetCompact", "num_feat": 8, "num_conv": 2}, "network_g")
    assert type(net).__name__ == "SRVGGNetCompact"
    assert "type 'SRVGGNetCompact' is BasicSR's class registered as 'SRVGGNetCompact_basicsr'" in caplog.text


def test_metric_options_are_strict_and_the_kit_mapping_is_said() -> None:
    from kit.metrics.validation import ValidationMetrics, check_metrics

    spec = {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True, "better": "higher"}
    notes = check_metrics({"psnr": spec})
    (note,) = notes
    assert note.startswith("val:metrics:psnr: calculate_psnr is computed by the kit's torch calculate_psnr_kit")
    with pytest.raises(OptionsKeyError, match="calculate_psnr has no argument 'test_y_chanel' .did you mean 'test_y_c"):
        ValidationMetrics({"psnr": {"type": "calculate_psnr", "crop_border": 4, "test_y_chanel": True}})
    with pytest.raises(OptionsKeyError, match="unknown type 'calculate_psnrr'.*closest: calculate_psnr"):
        check_metrics({"psnr": {"type": "calculate_psnrr", "crop_border": 4}})


def test_the_student_is_checked_not_built_twice(bundled_root, tmp_path, monkeypatch) -> None:
    import basicsr.models.sr_model as sr

    from tests.helpers import build, tiny_options

    built = []
    real = sr.build_network
    monkeypatch.setattr(sr, "build_network", lambda opt: built.append(opt["type"]) or real(opt))
    model = build(tiny_options(bundled_root, "once"), tmp_path)
    assert built == [model.opt["network_g"]["type"]]  # SRModel's one build; the kit only checked the spec
    with pytest.raises(OptionsKeyError, match="network_g: SRVGGNetCompact has no argument .num_feats."):
        build(tiny_options(bundled_root, "typo", **{"network_g:num_feats": 8}), tmp_path)
