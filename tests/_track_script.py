"""A tiny tracked training in its own process, for the 2-process (gloo DDP) test of `AttentionCollapseCallback`.

    accelerate launch --multi_gpu --num_processes 2 ... tests/_track_script.py OUT

Trains a 2-block model for 8 steps, probing every 4, and writes OUT/rank<i>.json on every process: the world size,
the steps of its callback's history, and the steps of the attention entries in its Trainer's log history.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _train_setup import blocks, tiny_model, training_args  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from inheritune_hf.tracking import AttentionCollapseCallback, attention_samples  # noqa: E402
from inheritune_hf.train import train  # noqa: E402


class SeenLogs(TrainerCallback):
    """Listed before the tracker, as Trainer lists report_to integrations: what an integration would receive."""

    def __init__(self):
        self.steps: list[int] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "attention/rank_one_heads" in logs:
            self.steps.append(state.global_step)


def main() -> None:
    out = Path(sys.argv[1])
    train_blocks, val_blocks = blocks()
    args = training_args(out / "trainer", max_steps=8, per_device_train_batch_size=4, eval_strategy="no")
    seen = SeenLogs()
    tracker = AttentionCollapseCallback(attention_samples(val_blocks, 4, 32, seed=0), every_n_steps=4)
    result = train(tiny_model(2, seed=3), train_blocks, val_blocks, args, callbacks=[seen, tracker])
    logged = [e["step"] for e in result.trainer.state.log_history if "attention/rank_one_heads" in e]
    record = {
        "world_size": args.world_size,
        "history": [step for step, _ in tracker.history],
        "log_history": logged,
        "integration": seen.steps,
    }
    (out / f"rank{args.process_index}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
