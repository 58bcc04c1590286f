"""`--plan`'s table: growth rounds it leaves out are named in an ellipsis row, and still counted in the worst case."""

from __future__ import annotations

from pathlib import Path

import pytest

from inheritune_hf.recipe import format_plan, parse_recipe_args, plan_recipe, reference_config
from inheritune_hf.recipe.plan import meta_causal_lm, prefix_parameter_counts

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def _rounds_of(plan):
    return [r for r in plan["rows"] if r["model"].startswith(("Inheritune round", "growth round"))]


def test_plan_names_the_growth_rounds_it_leaves_out():
    plan = plan_recipe(*parse_recipe_args(["--plan"], RECIPES / "gpt2_xl.yaml"))  # 24, 26, ..., 48: 13 rounds
    elided = plan["elided"]
    assert elided["count"] == 10 and elided["rounds"] == (3, 12) and elided["layers"] == (28, 46)
    assert elided["label"] == "... 10 growth rounds not shown: rounds 3-12 (28-46 layers)"
    assert plan["rows"][elided["before"] - 1]["model"].startswith("growth round 2,")
    assert plan["rows"][elided["before"]]["model"].startswith("growth round 13,")
    assert [r["layers"] for r in _rounds_of(plan)] == [24, 26, 48]  # the rows stay real runs, with numbers

    printed = format_plan(plan).splitlines()
    ellipsis_lines = [i for i, line in enumerate(printed) if line.startswith(f"| {elided['label']} |")]
    assert len(ellipsis_lines) == 2  # the size table and the cost table
    for i in ellipsis_lines:
        assert printed[i - 1].startswith("| growth round 2,") and printed[i + 1].startswith("| growth round 13,")


def test_the_worst_case_still_counts_every_elided_round():
    recipe, inheritune_args, data_args, training_args = parse_recipe_args(["--plan"], RECIPES / "gpt2_xl.yaml")
    plan = plan_recipe(recipe, inheritune_args, data_args, training_args)
    reference, baseline = plan["rows"][0], plan["rows"][-1]
    tokens = plan["tokens_per_step"] * training_args.max_steps
    params = prefix_parameter_counts(meta_causal_lm(reference_config(recipe, None, data_args.block_size)))
    every_round = sum(6 * params[depth] * tokens for depth in range(24, 49, 2))  # all 13, shown or not
    assert plan["worst_case"]["rounds"] == 13
    assert plan["worst_case"]["flops"] == reference["flops"] + every_round + baseline["flops"]
    shown = sum(r["flops"] for r in _rounds_of(plan))
    assert plan["worst_case"]["flops"] > reference["flops"] + shown + baseline["flops"]


@pytest.mark.parametrize(("max_layers", "elided"), [(28, None), (30, "round 3 (28 layers)")])
def test_a_short_growth_plan_shows_every_round_or_names_the_one_it_skips(max_layers, elided):
    recipe, inheritune_args, data_args, training_args = parse_recipe_args(["--plan"], RECIPES / "gpt2_xl.yaml")
    inheritune_args.max_layers = max_layers  # 24, 26, 28 (3 rounds: all shown) or 24 .. 30 (4: round 3 elided)
    plan = plan_recipe(recipe, inheritune_args, data_args, training_args)
    if elided is None:
        assert plan["elided"] is None and [r["layers"] for r in _rounds_of(plan)] == [24, 26, 28]
        assert "not shown" not in format_plan(plan)
    else:
        assert plan["elided"]["label"] == f"... 1 growth round not shown: {elided}"
        assert [r["layers"] for r in _rounds_of(plan)] == [24, 26, 30]
        assert f"| {plan['elided']['label']} |" in format_plan(plan)


def test_plan_prices_at_the_assumed_mfu_and_says_nothing_was_measured():
    from inheritune_hf.recipe.plan import ASSUMED_MFU, MEASURED_MFU, PEAK_BF16_FLOPS

    assert MEASURED_MFU == {}  # nothing measured yet: a row is added only from a GPU run, with where and when
    plan = plan_recipe(*parse_recipe_args(["--plan"], RECIPES / "gpt2_medium.yaml"))
    reference = plan["rows"][0]
    assert reference["mfu"] == ASSUMED_MFU == 0.40 and reference["mfu_measured"] is None
    assert reference["gpu_hours"] == pytest.approx(reference["flops"] / (PEAK_BF16_FLOPS * 0.40) / 3600, rel=1e-12)
    printed = format_plan(plan)
    assert "GPU-hours at an assumed 40% MFU of 989 TFLOP/s" in printed
    assert "nothing was measured for these shapes" in printed


def test_plan_prices_a_measured_shape_at_its_mfu_and_names_where_and_when(monkeypatch):
    from inheritune_hf.recipe import plan as plan_module

    recipe, inheritune_args, data_args, training_args = parse_recipe_args(["--plan"], RECIPES / "gpt2_medium.yaml")
    shape = (24, 1024, data_args.block_size, training_args.per_device_train_batch_size)  # the reference's shape
    measured = plan_module.MeasuredMFU(0.5, "one NVIDIA H200, torch 2.11.0+cu130", "2026-12-05")
    monkeypatch.setitem(plan_module.MEASURED_MFU, shape, measured)
    plan = plan_recipe(recipe, inheritune_args, data_args, training_args)
    reference, first_round = plan["rows"][0], plan["rows"][1]
    assert reference["layers"] == 24 and reference["mfu"] == 0.5 and reference["mfu_measured"] is measured
    assert reference["gpu_hours"] == pytest.approx(reference["flops"] / (989e12 * 0.5) / 3600, rel=1e-12)
    assert first_round["layers"] == 12 and first_round["mfu"] == 0.40  # a shape not measured stays assumed
    worst = plan["worst_case"]
    assert worst["gpu_hours"] < worst["flops"] / (989e12 * 0.40) / 3600  # the measured run costs less
    printed = format_plan(plan)
    assert "50.0% measured on one NVIDIA H200, torch 2.11.0+cu130 on 2026-12-05" in printed
    assert "at an assumed 40% for Inheritune round 1" in printed and "nothing was measured" not in printed
