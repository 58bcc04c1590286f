"""Verdicts no stronger than their evidence: report.md, the model card and the printed summary say the same thing,
and the card lists the recipe as it was set."""

from __future__ import annotations

from tiny_models import gpt2_config

from inheritune_hf.evaluate import DownstreamResult, DownstreamResults
from inheritune_hf.publish import model_card
from inheritune_hf.recipe import format_report
from inheritune_hf.verdict import weak_reference


def rounds(baseline_loss: float) -> list[dict]:
    """rounds.json as the demo wrote it: one round that matched the 8-layer reference, and the 4-layer baseline."""
    common = {"steps": 100, "tokens": 204_800, "cumulative_tokens": 204_800, "reference_val_loss": 5.2503}
    return [
        {"kind": "inheritune", "round": 1, "layers": 4, "strategy": "inherit", "val_loss": 5.1012,
         "target_loss": 5.2503, "matched": True, **common},
        {"kind": "random_baseline", "round": None, "layers": 4, "strategy": "random_init", "val_loss": baseline_loss,
         "target_loss": 5.2503, "matched": baseline_loss <= 5.2503, **common},
    ]  # fmt: skip


def test_a_baseline_that_also_matches_makes_the_reference_too_weak():
    note = weak_reference(rounds(5.1949), reference_tokens=204_800)
    assert note is not None
    assert note.startswith("But the same-size random-init model reached it too (5.1949 with 4 layers")
    assert "(it saw 204,800 training tokens) is too weak" in note and "--reference_max_steps" in note
    assert weak_reference(rounds(5.6)) is None  # the baseline fell short: the comparison means what it says
    assert weak_reference(rounds(5.6)[:1]) is None  # no baseline, nothing to caveat


def report_rows(baseline_loss: float) -> list[dict]:
    return [
        {"model": "reference (8L)", "layers": 8, "params": 900_000, "val_loss": 5.2503, "tokens": 204_800,
         "kind": "reference"},
        {"model": "Inheritune (4L)", "layers": 4, "params": 500_000, "val_loss": 5.1012, "tokens": 204_800,
         "kind": "inheritune", "matched": True},
        {"model": "random init, same size (4L)", "layers": 4, "params": 500_000, "val_loss": baseline_loss,
         "tokens": 204_800, "kind": "random_baseline", "matched": baseline_loss <= 5.2503},
    ]  # fmt: skip


def test_the_report_says_the_reference_is_too_weak_and_counts_its_tokens():
    text = format_report("tiny", report_rows(5.1949), {}, matched=True)
    header = "| model | layers | params | val loss | train tokens | tokens incl. reference's |"
    assert header in text
    assert "| Inheritune (4L) | 4 | 0.50M | 5.1012 | 204,800 | 409,600 |" in text  # its own and the reference's
    assert "| random init, same size (4L) | 4 | 0.50M | 5.1949 | 204,800 | 204,800 |" in text
    evidence = "Inheritune matched the reference's validation loss: 5.1012 with 4 layers against 5.2503 with 8."
    assert f"{evidence} But the same-size random-init model" in text
    fair = format_report("tiny", report_rows(5.6), {}, matched=True)
    assert "too weak" not in fair
    assert f"{evidence} The same-size random-init model, on one round's budget, did not reach it (5.6000).\n" in fair


def test_the_report_flags_scores_below_chance():
    def scores(*values: float) -> DownstreamResults:
        metrics = ("acc", "acc_norm")
        return DownstreamResults(
            [DownstreamResult("heldout_mc", m, v, None, True) for m, v in zip(metrics, values, strict=True)]
        )

    by_model = {"reference (8L)": scores(0.31, 0.33), "Inheritune (4L)": scores(0.17, 0.3), "base": scores(0.2, 0.25)}
    text = format_report("tiny", report_rows(5.6), by_model, matched=True)
    assert (  # one paragraph for every model, each task's chance level once; the reference is above it
        "At or below chance (heldout_mc 25.00), so carrying no signal: Inheritune (4L) heldout_mc acc 17.00; base "
        "heldout_mc acc 20.00, heldout_mc acc_norm 25.00. These models" in text
    )
    assert text.count("chance") == 2 and "reference (8L) heldout_mc" not in text


def card(tmp_path, baseline_loss: float = 5.1949, **kwargs):
    training = {"max_steps": 100, "num_train_epochs": 3.0, "weight_decay": 0.1, "adam_beta1": 0.9,
                "learning_rate": 0.0006, "warmup_steps": 10}  # fmt: skip
    lineage = {
        "source": "outputs/tiny/reference",
        "num_layers": 4,
        "source_num_layers": 8,
        "source_layers": [0, 1, 2, 3],
    }
    return model_card(
        gpt2_config(4), lineage=lineage, rounds=rounds(baseline_loss), training=training, license="mit", **kwargs
    )


def test_the_card_carries_the_same_caveat(tmp_path):
    text = card(tmp_path).content
    assert "**Matched** the reference's validation loss (round 1, 4 layers): 5.1012 against 5.2503. But the" in text
    assert "too weak for this comparison" in text
    assert "too weak" not in card(tmp_path, baseline_loss=5.6).content


def test_the_card_lists_settings_as_set_and_only_those_with_an_effect(tmp_path):
    text = card(tmp_path).content
    assert "| weight_decay | 0.1 |" in text and "| adam_beta1 | 0.9 |" in text
    assert "| learning_rate | 0.0006 |" in text and "| max_steps | 100 |" in text
    assert "num_train_epochs" not in text  # Trainer ignores it once max_steps is set
    assert "0.1000" not in text and "3.0000" not in text


def test_the_usage_snippet_names_where_the_model_is(tmp_path):
    local = card(tmp_path, repo_id="local/tiny-inheritune", usage_id="outputs/tiny/model").content
    assert 'from_pretrained("outputs/tiny/model")' in local and 'local/tiny-inheritune")' not in local
    hub = card(tmp_path, repo_id="me/tiny-inheritune").content
    assert 'from_pretrained("me/tiny-inheritune")' in hub
