"""Every numeric setting is checked where it is declared: an out-of-range value stops every entry point in one line
that names the flag and what it allows, before any data is read, model loaded or file written.

The values are not hand-picked: each settings dataclass's `RANGES` table (and `TRAINING_RANGES` for the
`TrainingArguments` fields the package relies on) says what is allowed, and `bad_values` derives values just
outside it. The commands get a real reference folder and a real text file, so a missing check would go on to
work (and, in the end, write the output folder) instead of failing for another reason.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from tiny_models import tiny_model
from transformers import TrainingArguments

from inheritune_hf.cli import main
from inheritune_hf.errors import InherituneError, InvalidArgumentError, TrainingError
from inheritune_hf.recipe import main as recipe_main
from inheritune_hf.settings import (
    TRAINING_RANGES,
    AnalyzeArguments,
    DataArguments,
    EvaluateArguments,
    InheritArguments,
    InherituneArguments,
    Range,
    RecipeArguments,
    check_training_arguments,
)

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def bad_values(allowed: Range) -> list[str]:
    """Values just outside `allowed`, as a user would type them: below, above, a fraction for an integer, nan."""
    values = []
    if allowed.low is not None:
        below = allowed.low if allowed.low_open else allowed.low - (1 if allowed.integer else 0.5)
        values.append(below if below not in allowed.special else below - 1)
    if allowed.high is not None:
        values.append(allowed.high if allowed.high_open else allowed.high + (1 if allowed.integer else 0.5))
    if allowed.integer:
        values.append((allowed.low or 0) + 1.5)
    else:
        values.append(math.nan)
    assert all(value not in allowed for value in values)
    return [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values]


def cases(dtype, ranges=None):
    ranges = ranges if ranges is not None else dtype.RANGES
    names = {f.name for f in dataclasses.fields(dtype)}
    return [(name, value) for name, allowed in ranges.items() if name in names for value in bad_values(allowed)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A tiny GPT-2 folder with a tokenizer: every command could go on to real work with it."""
    from inheritune_hf.data import embedded_corpus, train_tokenizer

    folder = tmp_path_factory.mktemp("reference")
    tokenizer = train_tokenizer(embedded_corpus(max_bytes=30_000)["train"], vocab_size=300)
    tiny_model("gpt2", 4, vocab_size=len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    path.write_text("def f(x):\n    return x + 1\n" * 400)
    return path


def assert_refused_in_one_line(code: int, err: str, flag: str, out: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert f"--{flag}" in lines[0], lines[0]
    assert not out.exists()


@pytest.mark.parametrize(("flag", "value"), cases(AnalyzeArguments))
def test_analyze_refuses_out_of_range(flag, value, reference, text_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["analyze", str(reference), "--text_file", str(text_file), "--output_dir", str(out), f"--{flag}={value}"]
    )
    assert_refused_in_one_line(code, capsys.readouterr().err, flag, out)


@pytest.mark.parametrize(("flag", "value"), cases(InheritArguments))
def test_inherit_refuses_out_of_range(flag, value, reference, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["inherit", str(reference), str(out), f"--{flag}={value}"])
    assert_refused_in_one_line(code, capsys.readouterr().err, flag, out)


@pytest.mark.parametrize(("flag", "value"), cases(EvaluateArguments) + [("batch_size", "0"), ("batch_size", "big")])
def test_evaluate_refuses_out_of_range(flag, value, reference, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["evaluate", str(reference), "--output_dir", str(out), f"--{flag}={value}"])
    assert_refused_in_one_line(code, capsys.readouterr().err, flag, out)


RUN_CASES = cases(InherituneArguments) + cases(DataArguments) + cases(TrainingArguments, TRAINING_RANGES)


@pytest.mark.parametrize(("flag", "value"), RUN_CASES)
def test_run_refuses_out_of_range(flag, value, reference, tmp_path, capsys):
    out = tmp_path / "out"
    small = ["--max_steps", "2", "--corpus_max_bytes", "20000", "--block_size", "16", "--report_to", "none"]
    argv = ["run", "--reference_model", str(reference), "--output_dir", str(out), *small, f"--{flag}={value}"]
    code = main(argv)
    assert_refused_in_one_line(code, capsys.readouterr().err, flag, out)


@pytest.mark.parametrize(("flag", "value"), cases(RecipeArguments) + RUN_CASES[::3])
def test_recipe_refuses_out_of_range(flag, value, tmp_path, capsys):
    out = tmp_path / "out"
    code = recipe_main(TINY, ["--smoke", "--output_dir", str(out), f"--{flag}={value}"])
    err = capsys.readouterr().err
    assert_refused_in_one_line(code, err, flag, out / "smoke")
    assert not out.exists()


@pytest.mark.parametrize("value", ["-3", "0"])
def test_max_steps_below_one_is_refused_with_its_range(value, reference, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--reference_model", str(reference), "--output_dir", str(out), "--max_steps", value])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == (
        f"inheritune run: error: --max_steps must be an integer >= 1, or -1 (train --num_train_epochs instead), "
        f"got {value}."
    )
    assert not out.exists()


def test_a_negative_learning_rate_is_refused_before_the_reference_is_measured(reference, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["run", "--reference_model", str(reference), "--output_dir", str(out), "--learning_rate", "-1"])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("--learning_rate must be a number > 0, got -1.0.")
    assert not out.exists()


def test_the_library_refuses_what_the_cli_refuses(tmp_path):
    """A notebook user gets the same line: the checks live in the dataclasses and in `check_training_arguments`."""
    with pytest.raises(TrainingError, match=r"^--grow_by must be an integer >= 1, got 0\.$"):
        InherituneArguments(grow_by=0)
    with pytest.raises(InvalidArgumentError, match=r"--tau must be a number in \(0, 1\], got 1.5"):
        AnalyzeArguments(model="m", text_file="t", output_dir="o", tau=1.5)
    with pytest.raises(TrainingError, match="--max_steps"):
        check_training_arguments(TrainingArguments(output_dir=str(tmp_path / "x"), max_steps=0))
    assert not (tmp_path / "x").exists()


def test_combinations_are_refused_where_declared():
    with pytest.raises(TrainingError, match="--max_layers 2 is below --start_layers 4"):
        InherituneArguments(start_layers=4, max_layers=2)
    with pytest.raises(InvalidArgumentError, match="--hidden_size 100 must be a multiple of --num_attention_heads 16"):
        RecipeArguments(hidden_size=100)
    with pytest.raises(InvalidArgumentError, match="--num_key_value_heads 3"):
        RecipeArguments(hidden_size=64, num_attention_heads=4, num_key_value_heads=3)
    RecipeArguments(reference="given/model", hidden_size=100)  # the shape is the given reference's


def test_start_layers_beyond_the_reference_is_refused_before_tokenizing(reference, tmp_path, capsys, monkeypatch):
    import inheritune_hf.data

    def no_data(*args, **kwargs):
        raise AssertionError("the data was read before the depth was checked")

    monkeypatch.setattr(inheritune_hf.data, "causal_lm_datasets", no_data)
    out = tmp_path / "out"
    code = main(["run", "--reference_model", str(reference), "--output_dir", str(out), "--start_layers", "12"])
    err = capsys.readouterr().err
    assert code == 2
    assert "start_layers=12 is outside 1..4" in err
    assert not out.exists()


def test_resume_with_nothing_to_resume_is_refused_before_tokenizing(reference, tmp_path, capsys, monkeypatch):
    import inheritune_hf.data

    monkeypatch.setattr(inheritune_hf.data, "causal_lm_datasets", lambda *a, **k: pytest.fail("data read"))
    out = tmp_path / "out"
    code = main(["run", "--reference_model", str(reference), "--output_dir", str(out), "--resume"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Nothing to resume" in err
    assert not out.exists()


def test_every_range_reads_as_a_sentence():
    assert Range(low=1, integer=True).describe() == "an integer >= 1"
    assert Range(low=0, high=1, low_open=True).describe() == "a number in (0, 1]"
    assert TRAINING_RANGES["max_steps"].describe() == "an integer >= 1, or -1 (train --num_train_epochs instead)"
    assert 3 in Range(low=1, integer=True) and 3.5 not in Range(low=1, integer=True)
    assert True not in Range(low=0) and math.inf not in Range(low=0)


def test_every_numeric_setting_has_a_range():
    """A new numeric field without a RANGES entry would go unchecked: this lists them."""
    for dtype in (AnalyzeArguments, InheritArguments, DataArguments, InherituneArguments, EvaluateArguments,
                  RecipeArguments):  # fmt: skip
        hints = {f.name: str(f.type) for f in dataclasses.fields(dtype)}
        numeric = {name for name, kind in hints.items() if kind.split(" ")[0].startswith(("int", "float", "list[int"))}
        assert numeric <= set(dtype.RANGES), (dtype.__name__, numeric - set(dtype.RANGES))
    assert issubclass(InvalidArgumentError, InherituneError)


def test_cli_errors_name_the_flag_not_the_keyword(reference, tmp_path, capsys):
    """The library says "--overwrite (library: overwrite=True)"; the command line shows only what it can type."""
    from inheritune_hf.io import check_output_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("x")
    with pytest.raises(InherituneError, match=r"Pass --overwrite \(library: overwrite=True\) to replace it"):
        check_output_dir(out)
    assert main(["run", "--reference_model", str(reference), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Pass --overwrite to replace it" in err and "overwrite=True" not in err
    assert [p.name for p in out.iterdir()] == ["kept.txt"]


def test_a_recipe_refuses_start_layers_beyond_its_reference_before_reading_data(tmp_path, capsys, monkeypatch):
    import inheritune_hf.recipe.run as recipe_run

    monkeypatch.setattr(recipe_run, "prepare_inputs", lambda *a, **k: pytest.fail("the data was read"))
    out = tmp_path / "out"
    code = recipe_main(TINY, ["--smoke", "--output_dir", str(out), "--start_layers", "12"])
    assert code == 2
    assert "start_layers=12 is outside 1..4" in capsys.readouterr().err
    assert not out.exists()


def _library_values(allowed: Range) -> list[float]:
    return [float(value) if "." in value or value == "nan" else int(value) for value in bad_values(allowed)]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (n, v)
        for n, allowed in {**AnalyzeArguments.RANGES, "max_tokens": Range(low=1, integer=True)}.items()
        for v in _library_values(allowed)
    ],
)
def test_analyze_attention_refuses_what_its_flag_refuses_before_tokenizing(name, value, monkeypatch):
    """A notebook caller gets the CLI's table, named as the keyword, before a token is read or a forward runs."""
    import inheritune_hf.analyze.run as analyze_run
    from inheritune_hf import analyze_attention

    monkeypatch.setattr(analyze_run, "token_stream", lambda *a, **k: pytest.fail("the text was read"))
    with pytest.raises(InvalidArgumentError) as refused:
        analyze_attention(tiny_model("gpt2"), None, texts="some text", **{name: value}, progress=False)
    message = str(refused.value)
    assert message.startswith(f"{name} must be ") and "\n" not in message


@pytest.mark.parametrize(
    ("name", "value"), [(n, v) for n, allowed in EvaluateArguments.RANGES.items() for v in _library_values(allowed)]
)
def test_evaluate_downstream_refuses_what_its_flag_refuses_before_lm_eval(name, value, monkeypatch):
    import inheritune_hf.evaluate as evaluate

    monkeypatch.setattr(evaluate, "_import_lm_eval", lambda: pytest.fail("lm-eval was imported"))
    with pytest.raises(InvalidArgumentError, match=f"^{name} must be "):
        evaluate.evaluate_downstream(tiny_model("gpt2"), None, tasks=["heldout_mc"], **{name: value})
    with pytest.raises(InvalidArgumentError, match="^batch_size must be "):
        evaluate.evaluate_downstream(tiny_model("gpt2"), None, tasks=["heldout_mc"], batch_size=0)


@pytest.mark.parametrize(
    ("name", "value"), [("num_choices", 1), ("max_words", 1), ("max_docs", 0), ("seed", -1), ("seed", 2.5)]
)
def test_write_heldout_tasks_refuses_a_bad_value_before_writing(name, value, tmp_path):
    from inheritune_hf import write_heldout_tasks

    texts = [f"the quick brown fox number {i} jumps" for i in range(40)]
    with pytest.raises(InvalidArgumentError, match=f"^{name} must be "):
        write_heldout_tasks(texts, tmp_path / "tasks", **{name: value})
    assert not (tmp_path / "tasks").exists()


def test_an_integer_setting_takes_an_int_only():
    """`num_samples: 2.0` in a YAML file is a float; it would reach `range()` and fail there, mid-run."""
    allowed = Range(low=1, integer=True)
    assert 2 in allowed and 2.0 not in allowed and True not in allowed and 0 not in allowed
    assert 2.0 in Range(low=1)
