"""benchmarks/bench_select.py: one row per criterion, each model inherited from the blocks its criterion demands.

The bench's `--smoke` mode runs the whole path (reference, analysis, selections, training, table, JSON) on a 4-layer
reference in seconds; a constructed report, on which every criterion demands other blocks, shows that each row's
model really holds its own criterion's blocks.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, set_seed

from inheritune_hf import AttentionReport
from inheritune_hf.analyze import SELECTION_CRITERIA
from inheritune_hf.io import read_json

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_select.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_select", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_select") / "result.json"
    return bench.main(["--smoke", "--json", str(out)]), out


@pytest.fixture(scope="module")
def prepared(bench):
    """The smoke settings and data, read once: (options, recipe, training arguments, inputs, validation blocks)."""
    options = bench.parse_options(["--smoke"])
    recipe, _, training_args, inputs, eval_blocks = bench.prepare(options)
    return options, recipe, training_args, inputs, eval_blocks


def constructed_report() -> AttentionReport:
    """4 blocks on which each criterion keeps other blocks when 2 are kept: prefix 0, 1; rank drops the rank-1
    blocks 0 and 2; Block Influence drops its lowest, 1 and 3; angular drops the closest span of 2, blocks 1-2."""
    far = 0.3
    angular = [[0.0 if i == j else far for j in range(5)] for i in range(5)]
    angular[1][3] = angular[3][1] = 0.05
    return AttentionReport(
        rank=[[1.0, 1.0], [5.0, 4.0], [1.0, 1.0], [5.0, 3.0]],
        mass=[[1.0, 1.0]] * 4,
        layers=[0, 1, 2, 3],
        layer_names=[f"h.{i}.attn" for i in range(4)],
        num_layers=4,
        block_influence=[0.5, 0.01, 0.4, 0.02],
        angular=angular,
    )


def reference_of(bench, recipe, inputs, options):
    """The recipe's reference, untrained (which blocks a model holds does not need a trained one)."""
    set_seed(0)
    return AutoModelForCausalLM.from_config(bench.reference_config(recipe, inputs.tokenizer, options.block_size))


def table_rows(table: str) -> list[list[str]]:
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_the_table_has_one_row_per_criterion_and_the_random_baseline(smoke):
    result, _ = smoke
    assert [row[0] for row in table_rows(result["table"])] == [*SELECTION_CRITERIA, "random init"]
    assert {row[4] for row in table_rows(result["table"]) if row[0] == "prefix"} == {"+0.0000"}


def test_every_row_of_the_smoke_run_keeps_the_blocks_its_criterion_demands(smoke):
    result, _ = smoke
    total, keep = result["settings"]["reference_layers"], result["settings"]["keep"]
    for run in result["runs"]:
        report, kept = run["report"], {criterion: run["rows"][criterion]["blocks"] for criterion in SELECTION_CRITERIA}
        dropped = {criterion: sorted(set(range(total)) - set(blocks)) for criterion, blocks in kept.items()}
        assert kept["prefix"] == list(range(keep))
        influence, max_rank = report["block_influence"], report["max_rank"]
        assert min(influence[b] for b in kept["block_influence"]) >= max(
            influence[b] for b in dropped["block_influence"]
        )
        assert min(max_rank[b] for b in kept["rank"]) >= max(max_rank[b] for b in dropped["rank"])
        start = dropped["angular"][0]
        assert dropped["angular"] == list(range(start, start + total - keep))  # one contiguous span
        assert report["angular_distance"][start] == min(report["angular_distance"])


def test_every_model_trains_the_same_steps_from_a_measured_start(smoke):
    result, out = smoke
    for run in result["runs"]:
        for row in run["rows"].values():
            assert row["steps"] == result["settings"]["steps"]
            assert row["curve"][0] == {"step": 0, "eval_loss": row["start_loss"]}
            assert math.isfinite(row["start_loss"]) and math.isfinite(row["end_loss"])
    assert read_json(out)["table"] == result["table"]


def test_each_criterion_inherits_and_trains_the_blocks_it_chose(bench, prepared):
    options, recipe, training_args, inputs, eval_blocks = prepared
    reference = reference_of(bench, recipe, inputs, options)
    rows = bench.compare_selections(
        reference, constructed_report(), inputs, eval_blocks, training_args, keep=2, steps=1, seed=0
    )
    expected = {"prefix": [0, 1], "rank": [1, 3], "block_influence": [0, 2], "angular": [0, 3], "random init": []}
    assert {criterion: row["blocks"] for criterion, row in rows.items()} == expected
    for criterion in SELECTION_CRITERIA:
        assert rows[criterion]["source_layers"] == expected[criterion]  # what inherit copied, from its lineage
    starts = [rows[criterion]["start_loss"] for criterion in rows]
    assert len(set(starts)) == len(starts)  # five different models before training


def test_under_inverse_layer_scaling_moved_blocks_are_refused_and_the_table_says_so(bench, prepared):
    options, recipe, training_args, inputs, eval_blocks = prepared
    assert "scale_attn_by_inverse_layer_idx=false" in recipe.config_overrides  # the bench's default
    paper = dataclasses.replace(recipe, config_overrides="scale_attn_by_inverse_layer_idx=true")
    reference = reference_of(bench, paper, inputs, options)
    rows = bench.compare_selections(
        reference, constructed_report(), inputs, eval_blocks, training_args, keep=2, steps=1, seed=0
    )
    assert [c for c in SELECTION_CRITERIA if "refused" in rows[c]] == ["rank", "block_influence", "angular"]
    assert math.isfinite(rows["prefix"]["end_loss"]) and math.isfinite(rows["random init"]["end_loss"])
    table = table_rows(bench.format_table([{"seed": 0, "rows": rows, "reference": {"end_loss": 6.0}}], 1, 4))
    assert {row[0] for row in table if row[3] == "refused by inherit"} == {"rank", "block_influence", "angular"}


def test_bad_steps_are_refused_before_any_work(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


def test_a_pair_of_criteria_flips_only_when_its_order_reverses_between_seeds(bench):
    def run(seed, **end_losses):
        rows = {c: {"end_loss": end_losses.get(c, 5.0)} for c in (*SELECTION_CRITERIA, "random init")}
        return {"seed": seed, "rows": rows}

    same_order = [run(0, prefix=4.8, rank=4.9), run(1, prefix=4.7, rank=4.75)]
    assert ("prefix", "rank") not in bench.flipped_pairs(same_order)
    reversed_order = [run(0, prefix=4.8, rank=4.9), run(1, prefix=4.8, rank=4.7)]
    assert bench.flipped_pairs(reversed_order) == [("prefix", "rank")]
    assert bench.format_ranking(reversed_order[1]) == "rank < prefix < angular = block_influence"
    refused = run(0, prefix=4.8, rank=math.nan)
    assert bench.format_ranking(refused) == "prefix < angular = block_influence (refused: rank)"
