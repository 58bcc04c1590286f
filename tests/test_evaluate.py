"""evaluate_downstream, PAPER_TASKS, DownstreamResults and `inheritune evaluate`, all offline.

The models are tiny GPT-2s built from a config; the tasks are local YAML + JSONL (and a dict config) built from
held-out text by `local_tasks`. Only the two tests that need lm-eval's built-in task index build it (~15 s, once).
"""

from __future__ import annotations

import json
import math
import sys

import pytest
from local_tasks import (
    MC_CHANCE,
    heldout_sentences,
    mc_docs,
    mc_task_config,
    ppl_docs,
    random_model,
    shared_task_dir,
    tokenizer,
)
from local_tasks import trained_model as trained_tiny_model

from inheritune_hf.errors import EvaluationError
from inheritune_hf.evaluate import (
    PAPER_TASKS,
    DownstreamResult,
    DownstreamResults,
    _task_manager,
    chance_levels,
    check_tasks,
    evaluate_downstream,
    write_heldout_tasks,
)

LOCAL_TASKS = ["toy_ppl", "toy_mc"]


class _Untouchable:
    """Stands in for a model: any use of it means work started before the input was checked."""

    def __getattr__(self, name):
        raise AssertionError(f"the model was used ({name}) before the tasks were checked")


@pytest.fixture(scope="module")
def task_dir():
    return shared_task_dir()


@pytest.fixture(scope="module")
def random_results(task_dir):
    return evaluate_downstream(random_model(), tokenizer(), LOCAL_TASKS, include_path=task_dir)


@pytest.fixture(scope="module")
def trained_results(task_dir):
    return evaluate_downstream(trained_tiny_model(), tokenizer(), LOCAL_TASKS, include_path=task_dir)


# ------------------------------------------------------------------------------------------- the paper's suite


def test_paper_tasks_are_the_papers_suite_and_metrics():
    assert dict(PAPER_TASKS) == {
        "arc_easy": ("acc",),
        "piqa": ("acc",),
        "sciq": ("acc",),
        "hellaswag": ("acc_norm",),
        "lambada_openai": ("acc", "perplexity"),
        "winogrande": ("acc",),
        "boolq": ("acc",),
        "wikitext": ("word_perplexity",),
    }
    with pytest.raises(TypeError):
        PAPER_TASKS["piqa"] = ("acc_norm",)  # read-only: a caller cannot silently change the suite


def test_paper_tasks_exist_in_lm_eval_with_those_metrics():
    index = _task_manager((), True).task_index  # lm-eval's built-in tasks (cached for the session)
    for task, metrics in PAPER_TASKS.items():
        declared = [m["metric"] for m in index[task].cfg["metric_list"]]
        assert set(metrics) <= set(declared), (task, declared)
    assert check_tasks() == list(PAPER_TASKS)


# ------------------------------------------------------------------------------------------- bad input


def test_unknown_builtin_task_lists_close_matches_before_any_work():
    with pytest.raises(EvaluationError) as err:
        evaluate_downstream(_Untouchable(), _Untouchable(), ["arc_easy", "hellaswagg"])
    message = str(err.value)
    assert "'hellaswagg'" in message and "did you mean hellaswag" in message
    assert "'arc_easy'" not in message  # only the unknown name is reported


def test_unknown_local_task_lists_close_matches_without_indexing_builtins(task_dir):
    with pytest.raises(EvaluationError, match=r"'toy_mcq': did you mean toy_mc"):
        evaluate_downstream(
            _Untouchable(), _Untouchable(), ["toy_ppl", "toy_mcq"], include_path=task_dir, include_defaults=False
        )


def test_metric_a_task_does_not_declare_is_rejected(task_dir):
    with pytest.raises(
        EvaluationError, match=r"'toy_mc' has no metric\(s\) \['f1'\]; it declares \['acc', 'acc_norm'\]"
    ):
        evaluate_downstream(_Untouchable(), _Untouchable(), {"toy_mc": ["f1"]}, include_path=task_dir)


@pytest.mark.parametrize("tasks", [[], "", ",", ["toy_mc", "toy_mc"], [{"dataset_path": "json"}], [3]])
def test_malformed_task_lists_are_rejected(tasks, task_dir):
    with pytest.raises(EvaluationError):
        check_tasks(tasks, include_path=task_dir)


def test_include_path_must_be_a_folder(tmp_path):
    with pytest.raises(EvaluationError, match="is not a folder"):
        check_tasks(["toy_mc"], include_path=tmp_path / "missing")


def test_missing_lm_eval_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    with pytest.raises(EvaluationError, match=r"pip install 'inheritune-hf\[eval\]'"):
        evaluate_downstream(_Untouchable(), _Untouchable(), ["toy_mc"])


# ------------------------------------------------------------------------------------------- offline evaluation


def test_local_tasks_give_one_row_per_task_and_metric(random_results):
    assert [(r.task, r.metric) for r in random_results.rows] == [
        ("toy_ppl", "word_perplexity"),
        ("toy_ppl", "byte_perplexity"),
        ("toy_ppl", "bits_per_byte"),
        ("toy_mc", "acc"),
        ("toy_mc", "acc_norm"),
    ]
    assert random_results.get("toy_ppl", "word_perplexity").num_samples == len(ppl_docs())
    assert random_results.get("toy_mc", "acc").num_samples == len(mc_docs())
    assert all(row.num_fewshot == 0 for row in random_results.rows)
    assert all(row.dataset is None and row.dataset_split == "test" for row in random_results.rows)


def test_every_number_is_in_its_range(random_results):
    vocab = len(tokenizer())
    ppl = {r.metric: r for r in random_results.rows if r.task == "toy_ppl"}
    bits = ppl["bits_per_byte"].value
    assert 0 < bits < math.log2(vocab) * 4  # a random model is bad but finite
    # lm-eval's definitions: byte perplexity = 2 ** bits per byte; a word spans >= 1 byte, so word ppl >= byte ppl
    assert ppl["byte_perplexity"].value == pytest.approx(2**bits, rel=1e-9)
    assert ppl["word_perplexity"].value >= ppl["byte_perplexity"].value > 1
    assert all(r.higher_is_better is False and r.stderr is None for r in ppl.values())

    n = len(mc_docs())
    for metric in ("acc", "acc_norm"):
        row = random_results.get("toy_mc", metric)
        assert row.higher_is_better is True
        assert 0.0 <= row.value <= 1.0
        assert (row.value * n) == pytest.approx(round(row.value * n))  # a count of right answers over n documents
        assert row.stderr == pytest.approx(math.sqrt(row.value * (1 - row.value) / (n - 1)))
    # one task, one number in the average: the first accuracy asked for (acc), not acc and acc_norm as two tasks
    assert random_results.average == pytest.approx(random_results.get("toy_mc", "acc").value)


def test_raw_lm_eval_json_is_kept_beside_the_rows(random_results):
    raw = random_results.raw
    assert raw["results"]["toy_mc"]["acc,none"] == random_results.get("toy_mc", "acc").value
    assert raw["n-samples"]["toy_mc"]["effective"] == len(mc_docs())
    assert "samples" not in raw  # read for the chance levels, then dropped: log_samples was not asked for
    json.dumps(raw)  # plain JSON, ready to upload


def test_chance_is_measured_from_the_documents_scored(random_results, tmp_path):
    expected = sum(1 / len(doc["choices"]) for doc in mc_docs()) / len(mc_docs())
    assert random_results.chances == {"toy_mc": pytest.approx(expected)}  # a perplexity task has none
    assert random_results.chance("toy_mc") == pytest.approx(expected)
    random_results.save(tmp_path)
    assert DownstreamResults.load(tmp_path).chances == random_results.chances


def test_chance_levels_follow_each_documents_number_of_choices():
    mc = {"output_type": "multiple_choice"}
    raw = {
        "configs": {"two_or_four": mc, "three": mc, "ppl": {"output_type": "loglikelihood_rolling"}},
        "samples": {
            "two_or_four": [{"arguments": [0, 1]}, {"arguments": [0, 1, 2, 3]}],
            "three": [{"arguments": [0, 1, 2]}] * 2,
            "ppl": [{"arguments": [0]}],
        },
        "group_subtasks": {"suite": ["two_or_four", "three"], "with_ppl": ["three", "ppl"]},
    }
    levels = chance_levels(raw)
    assert levels == pytest.approx({"two_or_four": 0.375, "three": 1 / 3, "suite": (0.5 + 0.25 + 2 / 3) / 4})
    assert chance_levels({"results": {}}) == {}  # saved without samples: the table is the fallback


def test_trained_model_beats_random_init_on_the_held_out_multiple_choice(random_results, trained_results):
    random_acc = random_results.get("toy_mc", "acc").value
    trained_acc = trained_results.get("toy_mc", "acc").value
    assert trained_acc >= 0.9  # it learned animal -> food and applies it after adjectives it never saw
    assert random_acc <= MC_CHANCE + 0.25  # chance is 1/4: each food is the answer equally often
    assert trained_acc - random_acc >= 0.5
    assert (
        trained_results.get("toy_ppl", "word_perplexity").value
        < random_results.get("toy_ppl", "word_perplexity").value
    )


def test_dict_config_and_yaml_path_tasks_work(task_dir, random_results):
    config = mc_task_config(task_dir / "toy_mc.jsonl", name="toy_mc_dict")
    results = evaluate_downstream(
        random_model(), tokenizer(), [config, str(task_dir / "toy_ppl.yaml")], include_defaults=False
    )
    assert [(r.task, r.metric) for r in results.rows][:2] == [("toy_mc_dict", "acc"), ("toy_mc_dict", "acc_norm")]
    # the same model on the same documents gives the same numbers however the task is given
    assert results.get("toy_mc_dict", "acc").value == random_results.get("toy_mc", "acc").value
    assert results.get("toy_ppl", "bits_per_byte").value == pytest.approx(
        random_results.get("toy_ppl", "bits_per_byte").value, rel=1e-6
    )


def test_mapping_keeps_only_the_named_metrics_and_restores_training_mode_and_rng(task_dir):
    import torch

    model = random_model()
    model.train()
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    results = evaluate_downstream(model, tokenizer(), {"toy_mc": ["acc_norm"]}, include_path=task_dir, limit=8)
    assert [(r.task, r.metric, r.num_samples) for r in results.rows] == [("toy_mc", "acc_norm", 8)]
    assert model.training
    assert torch.equal(torch.rand(3), expected)  # lm-eval reseeds the global RNGs; the caller's stream is kept


# ------------------------------------------------------------------------------------------- DownstreamResults


def _paper_like() -> DownstreamResults:
    rows = [
        DownstreamResult("arc_easy", "acc", 0.5, 0.01, True, 0, 100, "allenai/ai2_arc", "ARC-Easy", "test"),
        DownstreamResult("hellaswag", "acc_norm", 0.3, 0.02, True, 0, 100, "Rowan/hellaswag", None, "validation"),
        DownstreamResult("lambada_openai", "perplexity", 40.5, 1.5, False, 0, 100, "EleutherAI/lambada_openai"),
        DownstreamResult(
            "wikitext", "word_perplexity", 30.25, None, False, 0, 62, "EleutherAI/wikitext_document_level"
        ),
    ]
    return DownstreamResults(rows=rows, raw={"results": {"arc_easy": {"acc,none": 0.5}}})


def test_average_is_the_mean_of_accuracies_only():
    assert _paper_like().average == pytest.approx(0.4)
    assert DownstreamResults(rows=[]).average is None


def test_average_counts_each_task_once():
    rows = [
        DownstreamResult("hellaswag", "acc_norm", 0.30, higher_is_better=True),
        DownstreamResult("hellaswag", "acc", 0.28, higher_is_better=True),
        DownstreamResult("arc_easy", "acc", 0.50, higher_is_better=True),
    ]
    assert DownstreamResults(rows=rows).average == pytest.approx((0.30 + 0.50) / 2)


def test_markdown_prints_accuracies_in_percent_and_perplexities_as_is():
    table = _paper_like().to_markdown()
    assert "| arc_easy (0-shot) | acc | 50.00 | 1.00 |" in table
    assert "| wikitext (0-shot) | word_perplexity | 30.25 | - |" in table
    assert "| lambada_openai (0-shot) | perplexity | 40.50 | 1.50 |" in table
    assert table.splitlines()[-1] == "| **Average** | accuracy (chance 25.00) | **40.00** | |"


def test_accuracy_at_or_below_chance_is_flagged_as_no_signal():
    rows = [
        DownstreamResult("heldout_mc", "acc", 0.17, higher_is_better=True),
        DownstreamResult("piqa", "acc", 0.62, higher_is_better=True),
        DownstreamResult("heldout_ppl", "word_perplexity", 900.0, higher_is_better=False),
    ]
    results = DownstreamResults(rows=rows)
    assert [row.task for row in results.no_signal()] == ["heldout_mc"]
    assert results.chance_average == pytest.approx((0.25 + 0.5) / 2)
    assert results.chance_note() == (
        "At or below chance, so carrying no signal: heldout_mc acc 17.00 (chance 25.00). The model has not learned "
        "what these tasks measure; compare such scores only once they rise above chance."
    )
    assert results.to_markdown().endswith(f"*{results.chance_note()}*")
    assert _paper_like().chance_note() is None  # 50 and 30 are above 25


def test_eval_results_carry_every_row_for_the_model_index():
    results = _paper_like().to_eval_results()
    assert [(e.dataset_name, e.metric_type, e.metric_value) for e in results] == [
        ("arc_easy", "acc", 0.5),
        ("hellaswag", "acc_norm", 0.3),
        ("lambada_openai", "perplexity", 40.5),
        ("wikitext", "word_perplexity", 30.25),
    ]
    assert results[0].dataset_type == "allenai/ai2_arc" and results[0].dataset_config == "ARC-Easy"
    assert all(e.task_type == "text-generation" and e.dataset_args == {"num_few_shot": 0} for e in results)


def test_save_and_load_round_trip(tmp_path):
    original = _paper_like()
    original.save(tmp_path)
    loaded = DownstreamResults.load(tmp_path)
    assert loaded.rows == original.rows and loaded.raw == original.raw
    assert json.loads((tmp_path / "downstream_results.json").read_text())["average"] == pytest.approx(0.4)
    with pytest.raises(EvaluationError, match="run `inheritune evaluate` first"):
        DownstreamResults.load(tmp_path / "empty")


# ------------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-model")
    random_model().save_pretrained(path)
    tokenizer().save_pretrained(path)
    return path


def test_cli_evaluate_writes_results_and_raw_json(model_dir, task_dir, tmp_path, capsys, random_results):
    from inheritune_hf.cli import main

    out = tmp_path / "eval"
    code = main(
        ["evaluate", str(model_dir), "--tasks", "toy_ppl,toy_mc", "--include-path", str(task_dir)]
        + ["--output_dir", str(out)]
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["downstream_results.json", "lm_eval_results.json", "results.md"]
    loaded = DownstreamResults.load(out)
    # save_pretrained + from_pretrained keeps the weights, so the scores are those of the model in memory
    assert loaded.get("toy_mc", "acc").value == random_results.get("toy_mc", "acc").value
    assert "| toy_mc (0-shot) | acc |" in capsys.readouterr().out


def test_cli_evaluate_checks_tasks_and_output_before_loading(model_dir, task_dir, tmp_path, capsys):
    from inheritune_hf.cli import main

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine")
    assert (
        main(
            ["evaluate", str(model_dir), "--tasks", "toy_mc", "--include-path", str(task_dir), "--output_dir"]
            + [str(occupied)]
        )
        == 2
    )
    assert "not empty" in capsys.readouterr().err
    assert (occupied / "keep.txt").read_text() == "mine"

    out = tmp_path / "fresh"
    assert main(["evaluate", str(model_dir), "--tasks", "piqa,hellaswagg", "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'hellaswagg': did you mean hellaswag" in err and not out.exists()


def test_a_yaml_path_is_named_by_its_task_even_with_lm_eval_function_tags(tmp_path):
    from inheritune_hf.evaluate import _task_name

    path = tmp_path / "custom.yaml"
    path.write_text("task: my_task\nprocess_docs: !function utils.process_docs\n")
    assert _task_name(str(path)) == "my_task"


def test_heldout_tasks_from_plain_text_separate_a_trained_model_from_chance(tmp_path):
    folder = write_heldout_tasks(heldout_sentences(), tmp_path / "tasks", name="toytext", num_choices=4)
    docs = [json.loads(line) for line in (folder / "toytext_mc.jsonl").read_text().splitlines()]
    assert len(docs) == len(heldout_sentences())
    assert all(len(set(d["choices"])) == 4 and 0 <= d["gold"] < 4 for d in docs)
    golds = [d["gold"] for d in docs]
    assert len(set(golds)) > 1  # the answer's position is shuffled, so position bias cannot score

    tasks = ["toytext_ppl", "toytext_mc"]
    trained = evaluate_downstream(trained_tiny_model(), tokenizer(), tasks, include_path=folder)
    untrained = evaluate_downstream(random_model(), tokenizer(), tasks, include_path=folder)
    assert trained.get("toytext_mc", "acc").value >= 0.9
    assert trained.get("toytext_mc", "acc").value - untrained.get("toytext_mc", "acc").value >= 0.4
    assert trained.get("toytext_ppl", "bits_per_byte").value < untrained.get("toytext_ppl", "bits_per_byte").value


def test_heldout_tasks_need_enough_distinct_endings(tmp_path):
    with pytest.raises(EvaluationError, match="different endings"):
        write_heldout_tasks(["the cat fish .", "the cat fish ."], tmp_path)


def test_cli_evaluate_takes_a_run_folder_and_scores_its_final_round(model_dir, task_dir, tmp_path, random_results):
    import shutil

    from inheritune_hf.cli import main

    run_dir = tmp_path / "run"
    shutil.copytree(model_dir, run_dir / "round-2-4L" / "model")
    (run_dir / "run.json").write_text("{}")
    rows = [{"kind": "inheritune", "round": 2, "layers": 4, "checkpoint": "round-2-4L/model", "matched": True}]
    (run_dir / "rounds.json").write_text(json.dumps(rows))
    out = tmp_path / "eval"
    argv = ["evaluate", str(run_dir), "--tasks", "toy_mc", "--include_path", str(task_dir), "--output_dir", str(out)]
    assert main(argv) == 0
    assert DownstreamResults.load(out).get("toy_mc", "acc").value == random_results.get("toy_mc", "acc").value


def test_lm_eval_truncation_warnings_fold_into_one_line(caplog):
    import logging

    from inheritune_hf.evaluate import _TruncationSummary

    lm_eval_logger = logging.getLogger("lm_eval.models.huggingface")
    with caplog.at_level(logging.WARNING), _TruncationSummary(64):
        for total in (70, 90, 80):
            lm_eval_logger.warning(
                f"Combined length of context ({total - 5}) and continuation (5) exceeds model's maximum length (64). "
                f"Truncating {total - 64 + 1} tokens from the left."
            )
        lm_eval_logger.warning(
            "Left truncation applied. Original sequence length was 100, truncating to last 64 tokens."
        )
        lm_eval_logger.warning("something else")
    assert [record.getMessage() for record in caplog.records] == [
        "something else",
        "lm-eval cut 4 request(s) longer than the model's context of 64 tokens from the left (at most 36 tokens each): "
        "their scores see only the last 64 tokens.",
    ]
    assert not lm_eval_logger.filters  # the filter leaves with the evaluation
