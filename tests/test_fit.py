"""``kit-fit``: configurations within the caps, largest first; the recommendation is never over a cap."""

from __future__ import annotations

import kit  # noqa: F401  (first: compat + registries)

# isort: split
import pytest
import yaml
from basicsr.utils.registry import ARCH_REGISTRY

from kit.archs import deploy_network
from kit.archs.sizing import FAMILIES, fitting, recommend
from kit.cli.fit import main
from kit.export.budget import budget_violations, measure_budget
from kit.registry import check_spec

SHAPE = (1, 3, 64, 64)


def _independent_budget(network_g: dict):
    """Build the entry as train.py would (registry, real weights), deploy it, count it."""
    spec = dict(network_g)
    check_spec(ARCH_REGISTRY, spec, "network_g")
    cls = ARCH_REGISTRY.get(spec.pop("type"))
    return measure_budget(deploy_network(cls(**spec)), SHAPE)


@pytest.mark.parametrize(
    ("family", "max_params", "max_gmacs"),
    [
        ("SPANStudent", 300_000, None),
        ("SPANStudent", 1_000_000, 2.0),  # the MAC cap binds (1.0M params at 64² is ~4 GMACs)
        ("RLFNStudent", 150_000, 0.5),
        ("RepSRStudent", 250_000, None),
        ("NAFStudent", 5_000_000, 0.1),
    ],
)
def test_recommendation_never_over_the_caps(family, max_params, max_gmacs):
    scale = FAMILIES[family].default_scale
    fits, sized = fitting(family, scale, SHAPE, max_params, max_gmacs)
    best = recommend(fits)
    assert best is not None and sized > len(fits) > 0
    budget = _independent_budget(best.network_g())
    assert budget_violations(budget, max_params, max_gmacs) == []
    assert budget.params == best.params and budget.macs == best.count_macs()
    # every listed row is within the caps too, largest first, and the recommendation is the largest
    assert all(not budget_violations(c.budget, max_params, max_gmacs) for c in fits)
    assert [c.params for c in fits] == sorted((c.params for c in fits), reverse=True)
    assert best.params == fits[0].params
    if max_gmacs is not None:  # the MAC cap binds: without it a larger configuration fits
        assert fitting(family, scale, SHAPE, max_params, None)[0][0].params > best.params


def test_the_next_wider_configuration_is_over_a_cap():
    """The search stops at the cap, not before: one width step up from the recommendation does not fit."""
    family = FAMILIES["SPANStudent"]
    best = recommend(fitting("SPANStudent", 4, SHAPE, 400_000, None)[0])
    step = family.widths[1] - family.widths[0]
    wider = {**best.network_g(), family.width_key: best.arguments[family.width_key] + step}
    assert _independent_budget(wider).params > 400_000


def test_cli_prints_a_usable_entry(capsys):
    assert main(["--family", "SPANStudent", "--max-params", "2e5", "--input-size", "64x64", "--latency", "0"]) == 0
    out = capsys.readouterr().out
    entry = yaml.safe_load(out[out.index("network_g:") :])["network_g"]
    assert entry["type"] == "SPANStudent" and entry["scale"] == 4
    assert _independent_budget(entry).params <= 200_000
    assert "rule: the most deployed parameters" in out and "| 1 |" in out


def test_cli_times_the_largest(capsys):
    argv = ["--family", "RepSRStudent", "--max-params", "60000", "--latency", "1", "--latency-size", "16x16"]
    assert main([*argv, "--runs", "1", "--top", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2
    assert rows[0].split("|")[-2].strip().replace(".", "").isdigit()  # a latency in ms
    assert rows[1].split("|")[-2].strip() == "–"  # not timed


def test_nothing_fits_exits_2(capsys):
    assert main(["--family", "SPANStudent", "--max-params", "1000", "--latency", "0"]) == 2
    assert "no SPANStudent configuration of the grid fits params <= 1,000" in capsys.readouterr().err
    assert main(["--family", "NAFStudent", "--scale", "4", "--latency", "0"]) == 2
    assert "scale" in capsys.readouterr().err


def test_any_width_is_searched(capsys):
    """The NTIRE 2026 ESR baseline's SPAN (28 channels, 6 blocks: 150,688 params) is on the grid, and --widths
    and --width-step search other widths."""
    fits, _ = fitting("SPANStudent", 4, SHAPE, 150_688, None)
    assert {"num_feat": 28, "num_block": 6} in [{k: c.arguments[k] for k in ("num_feat", "num_block")} for c in fits]
    assert main(["--family", "SPANStudent", "--max-params", "2e5", "--widths", "28,32", "--latency", "0"]) == 0
    out = capsys.readouterr().out
    assert "num_feat 28–32 (2 values)" in out and "150,688" in out
    assert main(["--family", "RLFNStudent", "--max-params", "1e5", "--width-step", "1", "--latency", "0"]) == 0
    assert "(241 values)" in capsys.readouterr().out
