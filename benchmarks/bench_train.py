"""Benchmark train / grow on the tiny CPU setting (embedded corpus, GPT-2-style models of width 64-128).

1. Throughput: training tokens/s of `inheritune_hf.train` (Trainer) against a plain hand-written torch loop doing
   the same work (same model, data, batch, AdamW, cosine schedule, gradient clipping), side by side, alternating
   runs to share the machine's noise. Goal: >= 0.95x.
2. Growth: total training tokens until a round's validation loss reaches the reference's, with "continue"
   growth against "restart" growth (the paper's rule), from the same reference and first round. Goal: continue
   costs <= 0.6x of restart at equal final loss. A third run, continue_low_lr, gives the growth rounds their own
   peak learning rate and warmup (`--continue-lr-scale`, `--continue-warmup`).

    .venv/bin/python benchmarks/bench_train.py [--quick] [--json results.json]

Prints the measured ratios, whichever way they come out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    GPT2Config,
    GPT2LMHeadModel,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    get_cosine_schedule_with_warmup,
)
from transformers.utils import logging as hf_logging  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inheritune_hf.data import embedded_corpus, pack_dataset, train_tokenizer  # noqa: E402
from inheritune_hf.rounds import run_inheritune  # noqa: E402
from inheritune_hf.settings import InherituneArguments  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


def tiny_gpt2(vocab: int, block: int, layers: int, width: int, seed: int) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab, n_positions=block, n_embd=width, n_layer=layers, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(config)


def arguments(out, **overrides) -> TrainingArguments:
    settings = dict(
        output_dir=str(out), per_device_train_batch_size=16, per_device_eval_batch_size=32, learning_rate=3e-3,
        lr_scheduler_type="cosine", warmup_steps=10, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95,
        max_grad_norm=1.0, eval_strategy="no", save_strategy="no", logging_steps=10_000, report_to="none",
        use_cpu=True, seed=0, dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    settings.update(overrides)
    return TrainingArguments(**settings)


# ---------------------------------------------------------------------------------------------------------------
# 1. Throughput
# ---------------------------------------------------------------------------------------------------------------


class StepClock(TrainerCallback):
    """Wall time from the end of step `skip` to the end of training (the steady state, without setup)."""

    def __init__(self, skip: int):
        self.skip, self.start, self.end = skip, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.skip:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def plain_torch_loop(model, train_blocks, eval_blocks, steps: int, batch: int, skip: int) -> tuple[float, float]:
    """The same work written by hand: (end-to-end seconds, steady-state seconds after step `skip`)."""
    begin = time.perf_counter()
    generator = torch.Generator().manual_seed(0)
    loader = torch.utils.data.DataLoader(
        train_blocks, batch_size=batch, shuffle=True, generator=generator, collate_fn=default_data_collator
    )
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=3e-3,
        betas=(0.9, 0.95),
        fused=True,  # Trainer's default optimizer (optim="adamw_torch_fused")
    )
    scheduler = get_cosine_schedule_with_warmup(optimizer, 10, steps)
    model.train()
    step, steady = 0, None
    while step < steps:
        for inputs in loader:
            loss = model(**inputs).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == skip:
                steady = time.perf_counter()
            if step == steps:
                break
    end = time.perf_counter()
    model.eval()
    with torch.no_grad():  # the final evaluation `train` also does
        eval_loader = torch.utils.data.DataLoader(eval_blocks, batch_size=32, collate_fn=default_data_collator)
        losses = [model(**inputs).loss.item() for inputs in eval_loader]
    del losses
    return time.perf_counter() - begin, end - steady


def throughput(train_blocks, eval_blocks, vocab: int, block: int, steps: int, repeats: int) -> dict:
    batch, skip = 16, 5
    tokens_steady = (steps - skip) * batch * block
    tokens_total = steps * batch * block
    results = {"trainer": {"total": [], "steady": []}, "torch": {"total": [], "steady": []}}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            model = tiny_gpt2(vocab, block, 4, 128, seed=0)
            clock = StepClock(skip)
            begin = time.perf_counter()
            train(model, train_blocks, eval_blocks, arguments(tmp, max_steps=steps), callbacks=[clock])
            results["trainer"]["total"].append(time.perf_counter() - begin)
            results["trainer"]["steady"].append(clock.end - clock.start)
        model = tiny_gpt2(vocab, block, 4, 128, seed=0)
        total, steady = plain_torch_loop(model, train_blocks, eval_blocks, steps, batch, skip)
        results["torch"]["total"].append(total)
        results["torch"]["steady"].append(steady)
    summary = {}
    for name, times in results.items():
        summary[name] = {
            "tokens_per_s_steady": tokens_steady / statistics.median(times["steady"]),
            "tokens_per_s_end_to_end": tokens_total / statistics.median(times["total"]),
        }
    summary["ratio_steady"] = summary["trainer"]["tokens_per_s_steady"] / summary["torch"]["tokens_per_s_steady"]
    summary["ratio_end_to_end"] = (
        summary["trainer"]["tokens_per_s_end_to_end"] / summary["torch"]["tokens_per_s_end_to_end"]
    )
    summary["setting"] = {"model": "GPT-2 4 layers x 128", "batch": batch, "block": block, "steps": steps}
    return summary


# ---------------------------------------------------------------------------------------------------------------
# 2. continue vs restart
# ---------------------------------------------------------------------------------------------------------------


def growth(train_blocks, eval_blocks, vocab: int, block: int, settings: dict) -> dict:
    reference = tiny_gpt2(vocab, block, settings["reference_layers"], 64, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        reference_args = arguments(tmp, max_steps=settings["reference_steps"], warmup_steps=20)
        reference_result = train(reference, train_blocks, eval_blocks, reference_args)
    outcome = {"reference_layers": settings["reference_layers"], "reference_steps": settings["reference_steps"]}
    outcome["reference_loss"] = reference_result.final_loss
    variants = {
        "restart": ("restart", 1.0, None),
        "continue": ("continue", 1.0, None),
        "continue_low_lr": ("continue", settings["continue_lr_scale"], settings["continue_warmup"]),
    }
    for label, (strategy, lr_scale, warmup) in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            args = InherituneArguments(
                start_layers=settings["start_layers"], max_layers=settings["max_layers"], growth_strategy=strategy,
                stop_at_target=True, reference_loss=reference_result.final_loss, tolerance=settings["tolerance"],
                growth_lr_scale=lr_scale, growth_warmup_steps=warmup, plot=False,
            )  # fmt: skip
            round_args = arguments(
                Path(tmp) / "run", max_steps=settings["round_steps"], eval_strategy="steps",
                eval_steps=settings["eval_steps"], warmup_steps=10, eval_on_start=True,
            )  # fmt: skip
            result = run_inheritune(reference, train_blocks, eval_blocks, args, round_args)
            rounds = []
            for row in result.rounds:
                curve = json.loads((Path(tmp) / "run" / row.eval_curve).read_text())
                rounds.append({k: getattr(row, k) for k in ("layers", "steps", "tokens", "val_loss", "matched")})
                rounds[-1]["start_loss"] = curve[0]["eval_loss"]  # eval_on_start: the grown model, untrained
        outcome[label] = {
            "strategy": strategy,
            "growth_lr_scale": lr_scale,
            "growth_warmup_steps": warmup,
            "rounds": rounds,
            "total_tokens": result.rounds[-1].cumulative_tokens,
            "final_loss": result.rounds[-1].val_loss,
            "matched": result.matched,
        }
    for label in ("continue", "continue_low_lr"):
        outcome[f"{label}_over_restart_tokens"] = (
            outcome[label]["total_tokens"] / outcome["restart"]["total_tokens"]
            if outcome["restart"]["total_tokens"]
            else math.nan
        )
    outcome["settings"] = settings
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: stable on shared machines)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-growth", action="store_true")
    parser.add_argument("--reference-layers", type=int, default=8)
    parser.add_argument("--reference-steps", type=int, default=1500)
    parser.add_argument("--start-layers", type=int, default=2)
    parser.add_argument("--round-steps", type=int, default=150)
    parser.add_argument("--continue-lr-scale", type=float, default=0.3, help="growth_lr_scale of continue_low_lr")
    parser.add_argument("--continue-warmup", type=int, default=0, help="growth_warmup_steps of continue_low_lr")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.1,
        help="a round matches at reference loss + tolerance (on this tiny setting no round gets below the "
        "reference itself within one round's budget)",
    )
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    hf_logging.set_verbosity_error()

    vocab, block = 1024, 64
    started = time.perf_counter()
    corpus = embedded_corpus(max_bytes=1_500_000, validation_fraction=0.1)
    tokenizer = train_tokenizer(corpus["train"], vocab_size=vocab)
    train_blocks = pack_dataset(corpus["train"], tokenizer, block)
    eval_blocks = pack_dataset(corpus["validation"], tokenizer, block).select(range(128))
    print(f"data: {len(train_blocks)} train / {len(eval_blocks)} validation blocks of {block} tokens")

    steps, repeats = (30, 1) if options.quick else (60, 3)
    speed = None if options.skip_throughput else throughput(train_blocks, eval_blocks, vocab, block, steps, repeats)
    if speed:
        print("\n== throughput (tokens/s, median of alternating runs) ==")
        print(f"{'':28s}{'steady state':>14s}{'end to end':>14s}")
        for name, label in (("trainer", "inheritune_hf.train"), ("torch", "plain torch loop")):
            row = speed[name]
            print(f"{label:28s}{row['tokens_per_s_steady']:14.0f}{row['tokens_per_s_end_to_end']:14.0f}")
        print(f"{'ratio (goal >= 0.95)':28s}{speed['ratio_steady']:14.3f}{speed['ratio_end_to_end']:14.3f}")

    grown = None
    if not options.skip_growth:
        settings = {
            "reference_layers": options.reference_layers,
            "reference_steps": 60 if options.quick else options.reference_steps,
            "start_layers": options.start_layers,
            "max_layers": options.reference_layers,
            "round_steps": 40 if options.quick else options.round_steps,
        }
        settings.update(
            eval_steps=10,
            tolerance=options.tolerance,
            continue_lr_scale=options.continue_lr_scale,
            continue_warmup=options.continue_warmup,
        )
        grown = growth(train_blocks, eval_blocks, vocab, block, settings)
        target = grown["reference_loss"] + settings["tolerance"]
        print(
            f"\n== growth: tokens to reach the reference's loss {grown['reference_loss']:.4f} (+ tolerance: {target:.4f}) =="
        )
        for label in ("restart", "continue", "continue_low_lr"):
            row = grown[label]
            layers = " -> ".join(
                f"{r['layers']}L: {r['start_loss']:.3f}->{r['val_loss']:.3f} in {r['steps']} steps"
                for r in row["rounds"]
            )
            schedule = f"growth lr x{row['growth_lr_scale']:g}, warmup {row['growth_warmup_steps']}"
            print(f"{label:16s} {row['total_tokens']:>9d} tokens  matched={row['matched']}  ({schedule})  {layers}")
        for label in ("continue", "continue_low_lr"):
            print(f"{label} / restart tokens (goal <= 0.6): {grown[f'{label}_over_restart_tokens']:.3f}")
    print(f"\n(total {time.perf_counter() - started:.0f}s, torch threads {options.threads})")
    if options.json:
        options.json.write_text(json.dumps({"throughput": speed, "growth": grown}, indent=2))


if __name__ == "__main__":
    main()
