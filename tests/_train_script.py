"""A tiny training run in its own process, for the fault (SIGKILL + resume) and multi-process (DDP) tests.

    python tests/_train_script.py train OUT [--block-at-step N] [--resume] [--batch B]
    python tests/_train_script.py rounds OUT [--block-at-step N] [--resume]
    accelerate launch --multi_gpu --num_processes 2 ... tests/_train_script.py train OUT --batch 4

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
from transformers import TrainerCallback  # noqa: E402

from inheritune_hf.train import InherituneArguments, run_inheritune, train  # noqa: E402


class BlockAfterSave(TrainerCallback):
    """Announce a saved checkpoint, then hang until killed."""

    def __init__(self, step: int, round_marker: str | None = None):
        self.step, self.round_marker = step, round_marker

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step and (self.round_marker is None or self.round_marker in args.output_dir):
            print(f"CHECKPOINT-SAVED {state.global_step}", flush=True)
            time.sleep(600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["train", "rounds"])
    parser.add_argument("out")
    parser.add_argument("--block-at-step", type=int, default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    options = parser.parse_args()
    out = Path(options.out)
    train_blocks, val_blocks = blocks()
    args = training_args(
        out / "trainer" if options.mode == "train" else out,
        max_steps=options.steps,
        per_device_train_batch_size=options.batch,
        save_strategy="steps",
        save_steps=4,
        full_determinism=True,
    )

    if options.mode == "train":
        callbacks = [BlockAfterSave(options.block_at_step)] if options.block_at_step else []
        model = tiny_model(2, seed=3)
        result = train(
            model, train_blocks, val_blocks, args, callbacks=callbacks, resume_from_checkpoint=options.resume or None
        )
        if args.process_index == 0:
            result.trainer.save_model(str(out / "final"))
            (out / "result.json").write_text(
                json.dumps(
                    {
                        "eval_curve": result.eval_curve,
                        "final_loss": result.final_loss,
                        "steps": result.steps,
                        "world_size": args.world_size,
                        "train_losses": [e["loss"] for e in result.trainer.state.log_history if "loss" in e],
                    }
                )
            )
        return

    callbacks = [BlockAfterSave(options.block_at_step, "round-2")] if options.block_at_step else []
    run_inheritune(
        trained_reference(),
        train_blocks,
        val_blocks,
        InherituneArguments(start_layers=2, target_loss="0.0", resume=options.resume, plot=False),
        args,
        callbacks=callbacks,
    )


if __name__ == "__main__":
    main()
