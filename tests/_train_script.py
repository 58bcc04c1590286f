"""A tiny training run in its own process, for the fault (SIGKILL + resume) and multi-process (DDP) tests.

    python tests/_train_script.py train OUT [--block-at-step N] [--resume] [--batch B]
    python tests/_train_script.py rounds OUT [--block-at-step N] [--resume]
    accelerate launch --multi_gpu --num_processes 2 ... tests/_train_script.py rounds OUT --batch 4

`--block-at-step N` makes the run print "CHECKPOINT-SAVED <step>" right after Trainer saved checkpoint N (of the
second round, in `rounds` mode) and then wait, so the test can SIGKILL it at a known point.
`train` mode writes OUT/final (save_pretrained) and OUT/result.json (eval curve, final loss).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _train_setup import blocks, tiny_model, trained_reference, training_args  # noqa: E402
from transformers import GPT2LMHeadModel, TrainerCallback  # noqa: E402

from inheritune_hf.rounds import run_inheritune  # noqa: E402
from inheritune_hf.settings import InherituneArguments  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


class BlockAfterSave(TrainerCallback):
    """Announce a saved checkpoint, then hang until killed."""

    def __init__(self, step: int, round_marker: str | None = None):
        self.step, self.round_marker = step, round_marker

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step and (self.round_marker is None or self.round_marker in args.output_dir):
            print(f"CHECKPOINT-SAVED {state.global_step}", flush=True)
            time.sleep(600)


def run_train(out: Path, *, resume: bool = False, block_at_step: int | None = None, batch: int = 8) -> None:
    """Train a 2-block model for 12 steps (checkpoints every 4); write out/final and out/result.json."""
    train_blocks, val_blocks = blocks()
    args = training_args(out / "trainer", per_device_train_batch_size=batch, save_strategy="steps", save_steps=4)
    callbacks = [BlockAfterSave(block_at_step)] if block_at_step else []
    model = tiny_model(2, seed=3)
    result = train(model, train_blocks, val_blocks, args, callbacks=callbacks, resume_from_checkpoint=resume or None)
    if args.process_index == 0:
        result.trainer.save_model(str(out / "final"))
        losses = [entry["loss"] for entry in result.trainer.state.log_history if "loss" in entry]
        summary = {
            "eval_curve": result.eval_curve,
            "final_loss": result.final_loss,
            "steps": result.steps,
            "world_size": args.world_size,
            "train_losses": losses,
        }
        (out / "result.json").write_text(json.dumps(summary))


def run_rounds(
    out: Path, *, resume: bool = False, block_at_step: int | None = None, batch: int = 8, reference: Path | None = None
) -> None:
    """Inheritune from the 4-block reference: 2 -> 4 blocks (the target 0 is never met), 12 steps a round.

    The reference is read from `reference` if given (under DDP, training it here would itself be distributed).
    """
    train_blocks, val_blocks = blocks()
    args = training_args(out, per_device_train_batch_size=batch, save_strategy="steps", save_steps=4)
    callbacks = [BlockAfterSave(block_at_step, "round-2")] if block_at_step else []
    settings = InherituneArguments(start_layers=2, target_loss="0.0", resume=resume, plot=False)
    model = GPT2LMHeadModel.from_pretrained(reference) if reference else trained_reference()
    run_inheritune(model, train_blocks, val_blocks, settings, args, callbacks=callbacks)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "rounds"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--block-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--reference", type=Path, default=None)
    options = parser.parse_args()
    if options.mode == "train":
        run_train(options.out, resume=options.resume, block_at_step=options.block_at_step, batch=options.batch)
    else:
        run_rounds(
            options.out,
            resume=options.resume,
            block_at_step=options.block_at_step,
            batch=options.batch,
            reference=options.reference,
        )


if __name__ == "__main__":
    main()
