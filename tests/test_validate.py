"""The one ``type:`` rule: unknown names and arguments fail naming the key, even behind ``**kwargs``."""

from __future__ import annotations

import kit  # noqa: F401

# isort: split
import pytest
from basicsr.utils.registry import ARCH_REGISTRY

from kit.validate import OptionsKeyError, build_from_registry, check_spec


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
