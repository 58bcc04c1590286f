"""`AttentionCollapseCallback`: the paper's attention rank and mass measured during training (issue 15).

One tiny training serves most tests: 12 more steps of the 4-block test reference (trained, so its ranks and masses
are not the uniform ones of a random init and move with training), a probe every 4 steps, checkpoints every 4. The
callback sits between two spies, one listed before it (where Trainer lists the `report_to` integrations) and one
after it, which look at the model at every event.
"""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import tempfile
from pathlib import Path

import pytest
import torch
from _train_setup import blocks, tiny_model, trained_reference, training_args
from test_train_ddp import ENV, accelerate_command
from transformers import TrainerCallback

from inheritune_hf import AttentionCollapseCallback, analyze_attention
from inheritune_hf.errors import DataError, InherituneError, TrainingError
from inheritune_hf.rounds import run_inheritune
from inheritune_hf.settings import InherituneArguments
from inheritune_hf.tracking import (
    AttentionTracking,
    attention_metrics,
    attention_samples,
    check_trackable,
    plot_attention_history,
    read_attention_history,
    write_attention_history,
)
from inheritune_hf.train import train

EVERY = 4
STEPS = 12
LEARNING_RATE = (
    6e-3  # in 12 steps the heads' ranks and masses move, so the reports compared below differ in every field
)
PROBED = [0, 4, 8, 12]


def model():
    """A fresh copy of the trained 4-block test reference, to train on."""
    return copy.deepcopy(trained_reference()).train()


def samples() -> torch.Tensor:
    return attention_samples(blocks()[1], num_samples=8, seq_len=32, seed=0)


class Spy(TrainerCallback):
    """Records the model's training mode and attention implementation at each event, and every log it is handed."""

    def __init__(self):
        self.seen: list[tuple[str, int, bool, str]] = []
        self.logs: list[tuple[int, dict]] = []

    def _look(self, event, state, model):
        self.seen.append((event, state.global_step, model.training, model.config._attn_implementation))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._look("begin", state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._look("step", state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._look("end", state, model)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append((state.global_step, dict(logs or {})))


class Tracked:
    """The shared run: the callback, the spies, the trained model and its initial copy, the trainer's folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.before, self.after = Spy(), Spy()
        self.tracker = AttentionCollapseCallback(samples(), every_n_steps=EVERY)
        self.model = model()
        self.initial = copy.deepcopy(self.model)
        self.implementation = self.model.config._attn_implementation
        args = training_args(folder, max_steps=STEPS, save_strategy="steps", save_steps=4, learning_rate=LEARNING_RATE)
        train_blocks, val_blocks = blocks()
        self.result = train(
            self.model, train_blocks, val_blocks, args, callbacks=[self.before, self.tracker, self.after]
        )


@functools.lru_cache(maxsize=1)
def tracked() -> Tracked:
    return Tracked(Path(tempfile.mkdtemp(prefix="tracked-")))


def probe(model) -> object:
    ids = samples()
    return analyze_attention(model, input_ids=ids, num_samples=ids.shape[0], seq_len=ids.shape[1], progress=False)


# ---------------------------------------------------------------------------------------------------------------
# What it measures
# ---------------------------------------------------------------------------------------------------------------


def test_it_probes_at_step_0_every_n_steps_and_at_the_end():
    assert [step for step, _ in tracked().tracker.history] == PROBED


def test_the_last_report_is_analyze_attention_on_the_trained_model():
    run = tracked()
    last = run.tracker.history[-1][1]
    fresh = probe(run.model)
    assert last.rank == fresh.rank and last.mass == fresh.mass
    assert last.to_dict() == fresh.to_dict()  # Block Influence and angular distances too, to the last bit


def test_the_first_report_is_analyze_attention_before_any_step():
    run = tracked()
    first = run.tracker.history[0][1]
    fresh = probe(run.initial)
    assert first.rank == fresh.rank and first.mass == fresh.mass and first.to_dict() == fresh.to_dict()


def test_training_moved_what_it_measures():
    # Not a constant: the reports of step 0 and of the last step differ (ranks and masses too), so the equalities
    # above compare something.
    history = tracked().tracker.history
    first, last = history[0][1], history[-1][1]
    assert first.rank != last.rank and first.mass != last.mass
    assert first.to_dict() != last.to_dict()


def test_the_values_are_in_the_trainers_log_history_once_per_probe():
    run = tracked()
    entries = [e for e in run.result.trainer.state.log_history if "attention/rank_one_heads" in e]
    assert [e["step"] for e in entries] == PROBED
    for entry, (_, report) in zip(entries, run.tracker.history, strict=True):
        metrics = attention_metrics(report)
        assert {key: entry[key] for key in metrics} == metrics
        assert entry["attention/max_rank/layer_1"] == report.max_rank[1]
        assert entry["attention/avg_mass/layer_0"] == report.avg_mass[0]


def test_the_training_loss_is_still_logged_at_the_steps_it_probes():
    # Trainer.log clears control.should_log; the callback puts it back, or the loss logs of steps 4, 8, 12 vanish
    # (and under DDP the processes' collectives mismatch).
    losses = [e["step"] for e in tracked().result.trainer.state.log_history if "loss" in e]
    assert losses == [4, 8, 12]


def test_a_callback_listed_before_it_receives_the_values_as_report_to_integrations_would():
    # Trainer lists its report_to integrations before user callbacks: trainer.log reaches them, a change to
    # `logs` in a later callback's on_log would not.
    run = tracked()
    seen = [step for step, logs in run.before.logs if "attention/max_rank/layer_0" in logs]
    assert seen == PROBED


def test_training_mode_and_attention_implementation_are_restored_after_each_probe():
    run = tracked()
    before, after = run.before.seen, run.after.seen
    assert [(e, s) for e, s, *_ in before] == [(e, s) for e, s, *_ in after]
    assert before == after  # the probe ran between the two spies and left the model as it found it
    assert {implementation for *_, implementation in after} == {run.implementation}
    assert all(training for event, _, training, _ in after if event == "step")


def test_probing_does_not_change_the_training():
    # The probes run under inference_mode in eval mode and draw no random numbers: the same weights come out.
    plain = model()
    train_blocks, val_blocks = blocks()
    with tempfile.TemporaryDirectory() as folder:
        train(plain, train_blocks, val_blocks, training_args(folder, max_steps=STEPS, learning_rate=LEARNING_RATE))
    tracked_state = tracked().model.state_dict()
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, tracked_state[name]), name


# ---------------------------------------------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rebuilt", [False, True], ids=["in_place", "restore_callback_states"])
def test_the_history_survives_a_resume(rebuilt, tmp_path):
    run = tracked()
    checkpoint = run.folder / "checkpoint-8"
    tracker = AttentionCollapseCallback(samples(), every_n_steps=EVERY)
    args = training_args(
        tmp_path,
        max_steps=STEPS,
        save_strategy="steps",
        save_steps=4,
        learning_rate=LEARNING_RATE,  # the tracked run's settings, resumed
        restore_callback_states_from_checkpoint=rebuilt,
    )
    train_blocks, val_blocks = blocks()
    result = train(
        model(), train_blocks, val_blocks, args, callbacks=[tracker], resume_from_checkpoint=str(checkpoint)
    )
    # With restore_callback_states_from_checkpoint Trainer swaps in a copy rebuilt from the checkpoint.
    live = AttentionCollapseCallback.of(result.trainer)
    assert len(live) == 1 and (live[0] is not tracker) == rebuilt
    history = live[0].history
    assert [step for step, _ in history] == PROBED
    for (step, report), (_, original) in zip(history, run.tracker.history, strict=True):
        assert report.to_dict() == original.to_dict(), step  # restored (0, 4, 8), then measured (12)
    logged = [e["step"] for e in result.trainer.state.log_history if "attention/rank_one_heads" in e]
    assert logged == PROBED  # the steps before the checkpoint come from its log history, none twice


def test_a_resume_from_a_checkpoint_saved_without_the_callback_tracks_from_there(tmp_path):
    # Trainer saves each stateful callback's state under its name in the loaded trainer_state.json, which has no
    # entry for a callback added only now; the callback adds it, so the next checkpoint saves.
    train_blocks, val_blocks = blocks()
    args = training_args(tmp_path, max_steps=8, save_strategy="steps", save_steps=4)
    train(tiny_model(2, seed=3), train_blocks, val_blocks, args)
    tracker = AttentionCollapseCallback(samples(), every_n_steps=EVERY)
    args = training_args(tmp_path, max_steps=STEPS, save_strategy="steps", save_steps=4)
    train(tiny_model(2, seed=3), train_blocks, val_blocks, args, callbacks=[tracker], resume_from_checkpoint=True)
    assert [step for step, _ in tracker.history] == [8, 12]
    saved = json.loads((tmp_path / "checkpoint-12" / "trainer_state.json").read_text())
    assert [
        row["step"] for row in saved["stateful_callbacks"]["AttentionCollapseCallback"]["attributes"]["history"]
    ] == [
        8,
        12,
    ]


# ---------------------------------------------------------------------------------------------------------------
# Refusals
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, error",
    [
        (torch.rand(2, 8), DataError),  # not token ids
        (torch.arange(8), DataError),  # one stream, not [samples, T]
        (torch.zeros(0, 8, dtype=torch.long), DataError),
    ],
)
def test_samples_that_are_not_rows_of_token_ids_are_refused(ids, error):
    with pytest.raises(error, match="samples, T"):
        AttentionCollapseCallback(ids)


@pytest.mark.parametrize("setting", [{"every_n_steps": 0}, {"batch_size": 0}, {"tau": 1.5}, {"eta": 0.0}])
def test_settings_out_of_range_are_refused(setting):
    with pytest.raises(InherituneError):
        AttentionCollapseCallback(samples(), **setting)


def test_a_negative_flag_is_refused():
    with pytest.raises(TrainingError, match="track_attention_steps"):
        InherituneArguments(track_attention_steps=-1)
    with pytest.raises(TrainingError, match="track_attention_samples"):
        InherituneArguments(track_attention_samples=0)


def test_sharded_training_is_refused_at_train_begin_instead_of_hanging(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(TrainingError, match="FSDP"):
        check_trackable()
    tracker = AttentionCollapseCallback(samples())
    state = type("State", (), {"global_step": 0, "is_world_process_zero": True, "stateful_callbacks": {}})()
    with pytest.raises(TrainingError, match="hang"):
        tracker.on_train_begin(training_args(tmp_path), state, None, model=tiny_model(2))
    assert tracker.history == []


def test_zero3_partitioned_parameters_are_refused(monkeypatch):
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    model = tiny_model(2)
    check_trackable(model=model)  # a whole model on this process: fine
    model.transformer.wte.weight.ds_id = 0  # what DeepSpeed ZeRO-3 marks its partitioned parameters with
    with pytest.raises(TrainingError, match="ZeRO-3"):
        check_trackable(model=model)


def test_a_run_under_fsdp_with_tracking_is_refused_before_writing_anything(monkeypatch, tmp_path):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    train_blocks, val_blocks = blocks()
    out = tmp_path / "run"
    settings = InherituneArguments(start_layers=2, target_loss="0.0", track_attention_steps=4)
    with pytest.raises(TrainingError, match="FSDP"):
        run_inheritune(trained_reference(), train_blocks, val_blocks, settings, training_args(out))
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Files and the figure
# ---------------------------------------------------------------------------------------------------------------


def test_a_history_round_trips_through_json_with_stages_in_order(tmp_path):
    history = tracked().tracker.history
    path = write_attention_history(tmp_path / "h.json", {"round_2": history[:2], "round_1": history, "reference": []})
    raw = json.loads(path.read_text())
    assert list(raw) == ["reference", "round_1", "round_2"]
    row = raw["round_1"][-1]
    assert row["step"] == STEPS and row["max_rank"] == history[-1][1].max_rank
    assert row["avg_mass"] == history[-1][1].avg_mass and row["lazy_layers"] == history[-1][1].lazy_layers
    assert row["rank_one_fraction"] == history[-1][1].rank_one_fraction and row["report"]["rank"]
    back = read_attention_history(path)
    assert [(s, r.rank, r.mass) for s, r in back["round_1"]] == [(s, r.rank, r.mass) for s, r in history]


def test_the_figure_is_written(tmp_path):
    history = tracked().tracker.history
    path = plot_attention_history({"reference": history, "round_1": history[:3]}, tmp_path / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InherituneError, match="empty"):
        plot_attention_history([], tmp_path / "none.png")


# ---------------------------------------------------------------------------------------------------------------
# --track_attention_steps: the rounds and the recipe
# ---------------------------------------------------------------------------------------------------------------


def test_run_inheritune_tracks_every_round_and_the_baseline(tmp_path):
    train_blocks, val_blocks = blocks()
    out = tmp_path / "run"
    settings = InherituneArguments(start_layers=2, target_loss="0.0", track_attention_steps=6, random_baseline=True)
    run_inheritune(trained_reference(), train_blocks, val_blocks, settings, training_args(out))
    stages = read_attention_history(out / "attention_history.json")
    assert list(stages) == ["round_1", "round_2", "baseline"]
    for stage, history in stages.items():
        assert [step for step, _ in history] == [0, 6, 12], stage
        assert history[0][1].settings["num_samples"] == 32 and history[0][1].settings["seq_len"] == 32
    assert [r.num_layers for r in (stages["round_1"][0][1], stages["round_2"][0][1])] == [2, 4]
    assert (out / "attention_history.png").read_bytes()[:4] == b"\x89PNG"


def test_the_recipe_tracks_its_reference_whose_last_report_is_the_diagnosis(tmp_path):
    from inheritune_hf.recipe import main

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    out = tmp_path / "smoke"
    argv = ["--smoke", "--output_dir", str(out), "--eval_tasks", "none", "--track_attention_steps", "2"]
    argv += ["--track_attention_samples", "4"]  # the smoke diagnosis's 4
    assert main(recipe, argv) == 0
    stages = read_attention_history(out / "inheritune" / "attention_history.json")
    assert list(stages)[0] == "reference" and "round_1" in stages
    assert [step for step, _ in stages["reference"]] == [0, 2, 3]  # 3 smoke steps: 0, every 2, the last
    diagnosis = json.loads((out / "analysis" / "report.json").read_text())
    last = stages["reference"][-1][1]
    assert last.rank == diagnosis["rank"] and last.mass == diagnosis["mass"]  # the same samples, the same model
    reference_only = read_attention_history(out / "reference" / "attention_history.json")
    assert list(reference_only) == ["reference"]
    assert (out / "inheritune" / "attention_history.png").is_file()
    assert (out / "model" / "attention_history.png").is_file()  # the model card shows it


def test_tracking_does_not_stop_a_run_from_resuming(tmp_path):
    # The flag does not change the result, so a run started without it resumes with it (and the other way).
    train_blocks, val_blocks = blocks()
    out = tmp_path / "run"
    settings = InherituneArguments(start_layers=2, target_loss="0.0", max_layers=2)
    run_inheritune(trained_reference(), train_blocks, val_blocks, settings, training_args(out))
    resumed = InherituneArguments(
        start_layers=2, target_loss="0.0", max_layers=2, resume=True, track_attention_steps=4
    )
    run_inheritune(trained_reference(), train_blocks, val_blocks, resumed, training_args(out))


def test_attention_tracking_records_the_callback_trainer_ran(tmp_path):
    tracking = AttentionTracking(samples(), every_n_steps=EVERY)
    assert tracking.record("reference", tracked().result.trainer) == tracked().tracker.history
    assert tracking.write(tmp_path) == tmp_path / "attention_history.json"
    assert list(read_attention_history(tmp_path / "attention_history.json")) == ["reference"]


# ---------------------------------------------------------------------------------------------------------------
# Two processes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # 31-38 s on 2 loaded cores: two interpreters start, each builds the tokenizer and the blocks
def test_a_two_process_run_probes_and_logs_once(tmp_path):
    script = Path(__file__).with_name("_track_script.py")
    launched = subprocess.run(
        [
            *accelerate_command(), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", str(script), str(tmp_path),
        ],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-3000:]
    main, other = (json.loads((tmp_path / f"rank{i}.json").read_text()) for i in (0, 1))
    assert main["world_size"] == other["world_size"] == 2
    assert main["history"] == main["log_history"] == main["integration"] == [0, 4, 8]
    assert other["history"] == other["log_history"] == other["integration"] == []
