"""The model card of a real run reads back to the run's own files.

A card is what a stranger trusts: every setting it shows must equal run.json's once its numbers are parsed (within
the digits it prints, and never rounded to nothing), its growth-rounds table must be rounds.json's, and its verdict
line must say what rounds.json says (matched at N layers, or not and by how much, against the loss the run aimed
at). The runs are real `run_inheritune` runs on the tiny shared setting, published with `publish_run(dry_run=...)`
as `inheritune push --dry_run` does.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from _train_setup import blocks, trained_reference, training_args
from huggingface_hub import ModelCard

from inheritune_hf.publish import model_card, publish_run
from inheritune_hf.rounds import run_inheritune
from inheritune_hf.settings import InherituneArguments

RUNS = {
    # grows 2 -> 4 layers and never matches: the target 0 is out of reach; trains the random-init baseline too
    "unmatched, numeric target": dict(start_layers=2, target_loss="0", random_baseline=True),
    # matches in round 1: the reference's loss is given as 100, which any trained model beats
    "matched, given reference loss": dict(start_layers=2, reference_loss=100.0),
    # matches in round 1 through a wide tolerance, whichever side of the measured reference loss it lands
    "matched, by tolerance": dict(start_layers=2, tolerance=100.0),
}

VERDICT = re.compile(
    r"^\*\*(?P<outcome>Matched|Did not match)\*\* the (?P<what>reference's|target) validation loss"
    r"(?: \(round (?P<round_m>\d+), (?P<layers_m>\d+) layers\): "
    r"|: the last round \(round (?P<round_u>\d+), (?P<layers_u>\d+) layers\) reached )"
    r"(?P<loss>\S+) against (?P<target>[^\s.]+(?:\.\d+)?)"
    r"(?: \((?P<gap>[+-]\S+?)(?P<tolerance>, within the run's tolerance)?\))?\."
    r"(?: The target was set by target_loss; the reference's own is (?P<reference>\S+)\.)?$"
)


@pytest.fixture(scope="module", params=sorted(RUNS))
def published(request, tmp_path_factory):
    """(card, run.json, rounds.json) of one finished run, published to a dry-run folder."""
    root = tmp_path_factory.mktemp("card-roundtrip")
    train_blocks, val_blocks = blocks()
    args = InherituneArguments(plot=False, **RUNS[request.param])
    run_inheritune(
        trained_reference(),
        train_blocks,
        val_blocks,
        args,
        training_args(root / "run", max_steps=2, eval_steps=2, learning_rate=1.5e-4),
        metadata={"dataset": "embedded stdlib corpus"},
    )
    out = publish_run(root / "run", "alice/tiny", license="mit", dry_run=root / "dry")
    run = json.loads((root / "run" / "run.json").read_text())
    rows = json.loads((root / "run" / "rounds.json").read_text())
    return ModelCard.load(Path(out) / "README.md"), run, rows


# ------------------------------------------------------------------------------------------- reading a card


def table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under `heading`, as lists of cell texts (pipes unescaped)."""
    lines = text[text.index(heading) + len(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def assert_shows(shown: str, recorded: Any, what: str) -> None:
    """`shown` (a card cell) is `recorded` (a JSON value from the run's files), once parsed."""
    if isinstance(recorded, bool):
        assert shown == str(recorded), what
    elif isinstance(recorded, int):
        assert int(shown.replace(",", "")) == recorded, what
    elif isinstance(recorded, float):
        value = float(shown)
        last_digit = 10 ** Decimal(shown).as_tuple().exponent  # the card's own precision: half its last digit
        assert abs(value - recorded) <= float(last_digit) / 2 + 1e-15, f"{what}: {shown} for {recorded!r}"
        assert recorded == 0 or abs(value - recorded) <= 0.005 * abs(recorded), f"{what}: {shown} rounds too much"
    else:
        assert shown == str(recorded), what


def recorded_setting(setting: str, run: dict, rows: list[dict]) -> Any:
    """Where run.json or rounds.json records a setting the card's recipe table shows."""
    final = [row for row in rows if row["kind"] == "inheritune"][-1]
    from_rounds = {
        "final round steps": final["steps"],
        "final round tokens": final["tokens"],
        "tokens over all rounds": final["cumulative_tokens"],
        "dataset": run["metadata"]["dataset"],
    }
    if setting in from_rounds:
        return from_rounds[setting]
    for section in ("training", "inheritune"):
        if setting in run["config"][section]:
            return run["config"][section][setting]
    raise AssertionError(f"the card shows {setting!r}, which run.json does not record")


# ------------------------------------------------------------------------------------------- the card against the run


def test_every_setting_the_card_shows_is_run_jsons_value(published):
    card, run, rows = published
    shown = {setting: value for setting, value in table(card.text, "## Training recipe")}
    assert shown, "the card has no training recipe"
    for setting, value in shown.items():
        assert_shows(value, recorded_setting(setting, run, rows), setting)
    # and nothing run.json records as a plain setting is left off the card, but for those that had no effect
    no_effect = {"num_train_epochs"} if run["config"]["training"].get("max_steps", -1) > 0 else set()
    for section in ("training", "inheritune"):
        for key, value in run["config"][section].items():
            if isinstance(value, str | int | float | bool) and key not in no_effect:
                assert key in shown, f"run.json's {section}.{key} is not on the card"
    assert not no_effect & set(shown), "a setting Trainer ignored is on the card"
    assert shown["learning_rate"] == "0.00015"  # significant digits, not 0.0001


def test_the_growth_rounds_table_is_rounds_json(published):
    card, _, rows = published
    grown = [row for row in rows if row["kind"] == "inheritune"]
    shown = table(card.text, "### Growth rounds")
    assert len(shown) == len(grown)
    keys = ("round", "layers", "strategy", "steps", "tokens", "val_loss", "reference_val_loss")
    for cells, row in zip(shown, grown, strict=True):
        for key, value in zip(keys, cells[:-1], strict=True):
            assert_shows(value, row[key], f"round {row['round']} {key}")
        assert cells[-1] == ("yes" if row["matched"] else "no")


def test_the_verdict_line_says_what_rounds_json_says(published):
    card, _, rows = published
    final = [row for row in rows if row["kind"] == "inheritune"][-1]
    lines = [line for line in card.text.splitlines() if line.startswith(("**Matched**", "**Did not match**"))]
    assert len(lines) == 1, lines
    verdict = VERDICT.match(lines[0])
    assert verdict, lines[0]

    assert (verdict["outcome"] == "Matched") == final["matched"]
    round_, layers = (
        (verdict["round_m"], verdict["layers_m"]) if final["matched"] else (verdict["round_u"], verdict["layers_u"])
    )
    assert int(round_) == final["round"] and int(layers) == final["layers"]
    loss, target, reference = final["val_loss"], final["target_loss"], final["reference_val_loss"]
    assert_shows(verdict["loss"], loss, "verdict loss")
    assert_shows(verdict["target"], target, "verdict target")
    if math.isclose(target, reference):
        assert verdict["what"] == "reference's" and verdict["reference"] is None
    else:  # the run aimed elsewhere: the line names the target, and the reference's own loss beside it
        assert verdict["what"] == "target"
        assert_shows(verdict["reference"], reference, "verdict reference")
    if final["matched"] and loss <= target:
        assert verdict["gap"] is None
    else:  # by how much: the gap to the target, with its sign
        assert_shows(verdict["gap"], loss - target, "verdict gap")
        assert (verdict["tolerance"] is not None) == final["matched"]


def test_the_growth_sentence_names_the_runs_own_step_and_target(published):
    card, run, rows = published
    final = [row for row in rows if row["kind"] == "inheritune"][-1]
    aim = "the reference's" if math.isclose(final["target_loss"], final["reference_val_loss"]) else "the target"
    step = run["config"]["inheritune"]["grow_by"]
    assert f"while its validation loss is worse than {aim}, inherit {step} more blocks and train again." in card.text


# ------------------------------------------------------------------------------------------- the verdict, one case each


def _rows(loss: float, matched: bool, target: float, reference: float = 3.0) -> list[dict]:
    return [
        {
            "kind": "inheritune",
            "round": 2,
            "layers": 4,
            "val_loss": loss,
            "reference_val_loss": reference,
            "target_loss": target,
            "matched": matched,
        }
    ]


def test_a_round_that_beats_the_reference_but_misses_a_lower_target_is_not_called_worse_than_the_reference(tiny_model):
    model = tiny_model("gpt2")
    model.config.inheritune = {"source": "org/ref", "num_layers": 4, "source_layers": [0, 1, 2, 3]}
    text = model_card(model, rounds=_rows(2.95, False, target=2.9), license="mit").text
    assert (
        "**Did not match** the target validation loss: the last round (round 2, 4 layers) reached 2.9500 against "
        "2.9000 (+0.0500). The target was set by target_loss; the reference's own is 3.0000." in text
    )
    assert "the reference's validation loss" not in text


def test_a_match_within_the_tolerance_says_so(tiny_model):
    model = tiny_model("gpt2")
    model.config.inheritune = {"source": "org/ref", "num_layers": 4, "source_layers": [0, 1, 2, 3]}
    text = model_card(model, rounds=_rows(3.02, True, target=3.0), license="mit").text
    assert (
        "**Matched** the reference's validation loss (round 2, 4 layers): 3.0200 against 3.0000 (+0.0200, within "
        "the run's tolerance)." in text
    )
