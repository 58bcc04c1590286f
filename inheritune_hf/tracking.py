"""Watch attention collapse as it happens: the paper's rank and mass of every layer, measured during training.

`AttentionCollapseCallback` is a `transformers.TrainerCallback` that runs `analyze_attention` on a fixed set of
samples at step 0, every `every_n_steps` steps and at the last step, keeps `.history` (a list of
`(step, AttentionReport)`), and logs per-layer MaxRank and AvgMass (and the share of rank-1 heads) through the
Trainer's own logging, so TensorBoard, trackio or W&B show them with `report_to`. The paper's first claim (deep
layers of a trained decoder go lazy: attention rank 1) is a statement about the end of training; this is how to see
when, and in which layers, it sets in.

Logging through the Trainer needs the Trainer itself, which callbacks are not handed: `Trainer.log` appends to
`state.log_history` and then calls every callback's `on_log`, the `report_to` integrations first (Trainer places
them before user callbacks), so adding keys to `logs` in a user's `on_log` would come too late for them. The
callback is therefore bound to its Trainer (`callback.bind(trainer)`; `inheritune_hf.train.train` binds the ones
it is given) and calls `trainer.log`. An unbound callback still records its values in `state.log_history`, but the
integrations do not see them (it warns once when `report_to` names any).

`AttentionTracking` is what `--track_attention_steps N` attaches to a run (`inheritune run`, the recipes): samples
drawn once from the validation data, one callback per stage (the reference's training, each round, the baseline)
and `attention_history.json` / `attention_history.png` in the run folder.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .analyze import AttentionReport, analyze_attention, sample_source
from .analyze.samples import draw_samples
from .errors import DataError, InherituneError, TrainingError
from .io import atomic_path, read_json, write_json
from .settings import POSITIVE_INT, AnalyzeArguments, check_arguments

if TYPE_CHECKING:
    from transformers import Trainer, TrainingArguments

logger = logging.getLogger(__name__)

ATTENTION_HISTORY_FILE = "attention_history.json"
ATTENTION_FIGURE_FILE = "attention_history.png"

History = list[tuple[int, AttentionReport]]

__all__ = [
    "ATTENTION_FIGURE_FILE",
    "ATTENTION_HISTORY_FILE",
    "AttentionCollapseCallback",
    "AttentionTracking",
    "attention_metrics",
    "attention_samples",
    "check_trackable",
    "history_from_json",
    "history_to_json",
    "plot_attention_history",
    "read_attention_history",
    "write_attention_history",
]


# ---------------------------------------------------------------------------------------------------------------
# What is logged, and how a history is written
# ---------------------------------------------------------------------------------------------------------------


def attention_metrics(report: AttentionReport) -> dict[str, float]:
    """The scalars logged at each probe: `attention/max_rank/layer_i`, `attention/avg_mass/layer_i` per decoder
    block i, `attention/rank_one_heads` (share of all heads whose mean rank rounds to 1) and `attention/lazy_layers`
    (how many layers have MaxRank 1). A model with several attention calls in one block is keyed by call index."""
    keys = report.layers if len(set(report.layers)) == len(report.layers) else list(range(len(report.layers)))
    metrics: dict[str, float] = {}
    for key, value in zip(keys, report.max_rank, strict=True):
        metrics[f"attention/max_rank/layer_{key}"] = float(value)
    for key, value in zip(keys, report.avg_mass, strict=True):
        metrics[f"attention/avg_mass/layer_{key}"] = float(value)
    metrics["attention/rank_one_heads"] = float(report.rank_one_fraction)
    metrics["attention/lazy_layers"] = float(len(report.lazy_layers))
    return metrics


def history_to_json(history: Sequence[tuple[int, AttentionReport]]) -> list[dict[str, Any]]:
    """A history as JSON rows: step, the per-layer summaries a reader plots (MaxRank, AvgMass, lazy layers, share of
    rank-1 heads) and the full per-head report (`AttentionReport.to_dict`), which `history_from_json` reads back."""
    return [
        {
            "step": int(step),
            "max_rank": report.max_rank,
            "avg_mass": report.avg_mass,
            "lazy_layers": report.lazy_layers,
            "rank_one_fraction": report.rank_one_fraction,
            "report": report.to_dict(),
        }
        for step, report in history
    ]


def history_from_json(rows: Sequence[Mapping[str, Any]]) -> History:
    """The `(step, AttentionReport)` pairs of rows written by `history_to_json`."""
    try:
        return [(int(row["step"]), AttentionReport.from_dict(row["report"])) for row in rows]
    except (KeyError, TypeError) as err:
        raise InherituneError(
            f"Not an attention history (rows of step and report, as history_to_json writes): {err!r}."
        ) from err


def _as_stages(history: Sequence[tuple[int, AttentionReport]] | Mapping[str, Any]) -> dict[str, History]:
    if isinstance(history, Mapping):
        return {str(stage): list(entries) for stage, entries in history.items()}
    return {"training": list(history)}


def _stage_order(stage: str) -> tuple[int, int, str]:
    """reference, then round_1, round_2, ..., then the baseline, then anything else by name."""
    if stage == "reference":
        return (0, 0, stage)
    if stage.startswith("round_") and stage[6:].isdigit():
        return (1, int(stage[6:]), stage)
    return (2 if stage == "baseline" else 3, 0, stage)


def write_attention_history(
    path: str | os.PathLike, history: Sequence[tuple[int, AttentionReport]] | Mapping[str, Any]
) -> Path:
    """Write `{stage: history_to_json(history)}` to `path`, atomically. A plain history is stage "training"."""
    stages = _as_stages(history)
    ordered = {stage: history_to_json(stages[stage]) for stage in sorted(stages, key=_stage_order)}
    return write_json(path, ordered)


def read_attention_history(path: str | os.PathLike) -> dict[str, History]:
    """The stages of an `attention_history.json`, each a list of `(step, AttentionReport)`."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InherituneError(f"{path} is not an attention history: expected {{stage: rows}}.")
    return {stage: history_from_json(rows) for stage, rows in data.items()}


def plot_attention_history(
    history: Sequence[tuple[int, AttentionReport]] | Mapping[str, Any], path: str | os.PathLike
) -> Path:
    """MaxRank of every layer against training steps, one panel per stage (a dict of stage -> history) or one.

    One line per layer, coloured by depth on a sequential colormap with a colourbar (it reads at 48 layers where
    a legend would not); log y from 1, with a dashed line at rank 1: a layer whose line reaches it has gone lazy.
    Each panel's title gives the lazy layers and the share of rank-1 heads at its last probe. Needs matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter
    except ImportError as err:
        raise InherituneError("plot_attention_history needs matplotlib: pip install 'inheritune-hf[plot]'.") from err
    stages = {stage: entries for stage, entries in _as_stages(history).items() if entries}
    if not stages:
        raise InherituneError("The attention history is empty: nothing to plot (did the callback run a probe?).")
    ordered = sorted(stages, key=_stage_order)
    depth = max(report.num_layers for entries in stages.values() for _, report in entries)
    top = max(max(report.max_rank) for entries in stages.values() for _, report in entries)
    cmap = plt.get_cmap("viridis")
    norm = Normalize(vmin=0, vmax=max(depth - 1, 1))

    width = min(4.6 * len(ordered) + 1.6, 22.0)
    fig, axes = plt.subplots(1, len(ordered), figsize=(width, 4.4), sharey=True, squeeze=False, layout="constrained")
    try:
        for ax, stage in zip(axes[0], ordered, strict=True):
            entries = sorted(stages[stage], key=lambda pair: pair[0])
            steps = [step for step, _ in entries]
            rows = len(entries[-1][1].layers)
            marker = "o" if len(entries) <= 12 else None
            # Layers often share a value (a random init attends uniformly everywhere). Deeper layers are drawn first,
            # wider and with larger markers, so coinciding lines show as bands of their colours, not as the last one.
            for row in sorted(range(rows), key=lambda r: -entries[-1][1].layers[r]):
                layer = entries[-1][1].layers[row]
                values = [report.max_rank[row] for _, report in entries]
                share = norm(layer)
                ax.plot(
                    steps,
                    values,
                    color=cmap(share),
                    marker=marker,
                    markersize=2.5 + 3.0 * share,
                    linewidth=1.0 + 1.8 * share,
                )
            ax.axhline(1.0, color="black", linestyle="--", linewidth=1.0)
            last = entries[-1][1]
            lazy = last.lazy_layers
            name = "" if stage == "training" else f"{stage.replace('_', ' ')}: "
            ax.set_title(
                f"{name}lazy layers at step {steps[-1]}: {lazy if lazy else 'none'}\n"
                f"rank-1 heads {100 * last.rank_one_fraction:.0f}%",
                fontsize="medium",
            )
            ax.set_xlabel("training step")
            ax.grid(True, which="major", axis="y", alpha=0.3)
        first = axes[0][0]
        first.set_yscale("log")
        first.set_ylim(0.9, max(2.0, top * 1.25))
        ticks = [t for t in (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 500) if t <= max(2.0, top * 1.25)]
        first.yaxis.set_major_locator(FixedLocator(ticks))
        first.yaxis.set_major_formatter(ScalarFormatter())
        first.yaxis.set_minor_formatter(NullFormatter())
        first.set_ylabel("MaxRank (max over heads of mean k*)")
        first.text(0.02, 1.0, " rank 1: lazy", transform=first.get_yaxis_transform(), va="bottom", fontsize="small")
        tau = stages[ordered[0]][-1][1].settings.get("tau", 0.9)
        fig.suptitle(f"Attention rank per layer during training (tau={tau})", fontsize="large")
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes[0].tolist(), pad=0.01, aspect=30)
        bar.set_label("layer (decoder block, 0 = first)")
        if depth <= 16:
            bar.set_ticks(range(depth))
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The callback
# ---------------------------------------------------------------------------------------------------------------


def _sharded_by(args: TrainingArguments | None = None, model: torch.nn.Module | None = None) -> str | None:
    """What shards the weights ('FSDP', 'DeepSpeed ZeRO-3') when no one process holds them all, else None.

    Looks at the model's parameters (DTensor shards, ZeRO-3's `ds_id`), the Accelerate state Trainer made, the
    TrainingArguments and the `accelerate launch` environment, so it answers before training as well as inside it.
    """
    if model is not None:
        for parameter in model.parameters():
            if hasattr(parameter, "ds_id"):
                return "DeepSpeed ZeRO-3"
            if type(parameter).__name__ == "DTensor" or type(parameter.data).__name__ == "DTensor":
                return "FSDP (or tensor parallelism: the weights are DTensor shards)"
        if any(type(module).__name__ == "FullyShardedDataParallel" for module in model.modules()):
            return "FSDP"
    if args is not None and getattr(args, "fsdp", None):
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"):
        return "FSDP"
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():
        return "DeepSpeed ZeRO-3"
    config = getattr(args, "hf_deepspeed_config", None) if args is not None else None
    if config is not None and config.is_zero3():
        return "DeepSpeed ZeRO-3"
    if (
        os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true")
        and os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    ):
        return "DeepSpeed ZeRO-3"
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state:  # Trainer made its Accelerator: its plugins are the final word
        state = AcceleratorState()
        if getattr(state, "fsdp_plugin", None) is not None:
            return "FSDP"
        plugin = getattr(state, "deepspeed_plugin", None)
        if plugin is not None and getattr(plugin, "zero_stage", None) == 3:
            return "DeepSpeed ZeRO-3"
    return None


def check_trackable(args: TrainingArguments | None = None, model: torch.nn.Module | None = None) -> None:
    """Refuse attention tracking under FSDP or DeepSpeed ZeRO-3, where it would hang instead of failing.

    The probe is a forward pass on the main process alone; under FSDP or ZeRO-3 each process holds a shard of the
    weights and a forward needs every process, so the main process would wait forever for the others.
    """
    sharding = _sharded_by(args, model)
    if sharding is not None:
        raise TrainingError(
            f"Attention tracking cannot run under {sharding}: its probe is a forward pass on the main process alone, "
            "and sharded weights need every process (it would hang). Turn tracking off (--track_attention_steps 0) "
            "and run `inheritune analyze` on the saved checkpoints instead, or train with DDP."
        )


class AttentionCollapseCallback(TrainerCallback, ExportableState):
    """Attention rank and mass of every layer during training, on fixed samples: the paper's collapse, over time.

    `input_ids` is a `[samples, T]` tensor of token ids (e.g. `attention_samples(eval_dataset, 100, 100)`, the
    paper's 100 windows of 100 validation tokens). At step 0 (`on_train_begin`), every `every_n_steps` steps and at
    the last step, the main process runs `analyze_attention` on them (eval mode, `torch.inference_mode`, the
    attention implementation and training mode restored afterwards), appends `(step, report)` to `.history` and
    logs `attention_metrics(report)`: through `trainer.log` once bound (`bind(trainer)`; `inheritune_hf.train.train`
    binds it), so `report_to` integrations receive them; unbound, into `state.log_history` only.

    `.history` survives `resume_from_checkpoint`: it is saved in each checkpoint's `trainer_state.json` (Trainer's
    `ExportableState`) and read back, in place, when training resumes. With
    `TrainingArguments.restore_callback_states_from_checkpoint=True` Trainer instead swaps in a copy rebuilt from the
    checkpoint, unbound (`AttentionCollapseCallback.of(trainer)` finds it). Its size there is about
    L x (2 x heads + L) numbers per probe (the angular-distance matrix included): choose `every_n_steps` with that in
    mind for long runs of deep models. A history starts afresh when a training starts at step 0.

    Under DDP only the main process probes (the others wait at the next step's all-reduce). Under FSDP or DeepSpeed
    ZeRO-3 it refuses at `on_train_begin` (`check_trackable`): a main-process-only forward would hang there.
    """

    def __init__(
        self,
        input_ids: Any,
        every_n_steps: int = 100,
        tau: float = 0.9,
        eta: float = 0.9,
        batch_size: int = 8,
    ) -> None:
        ids = torch.as_tensor(input_ids)
        if ids.dtype.is_floating_point or ids.dim() != 2 or ids.shape[0] < 1 or ids.shape[1] < 1:
            raise DataError(
                f"input_ids must be integer token ids of shape [samples, T], got {tuple(ids.shape)} {ids.dtype}; "
                "draw them with inheritune_hf.tracking.attention_samples(eval_dataset, num_samples, seq_len)."
            )
        # The probe is `analyze_attention`'s: the same limits (`every_n_steps` as the positive form of
        # --track_attention_steps, whose 0 means "off").
        check_arguments(
            {"every_n_steps": every_n_steps, "tau": tau, "eta": eta, "batch_size": batch_size},
            {**AnalyzeArguments.RANGES, "every_n_steps": POSITIVE_INT},
        )
        self.input_ids = ids.long().cpu()
        self.every_n_steps = every_n_steps
        self.tau, self.eta, self.batch_size = float(tau), float(eta), batch_size
        self._history: History = []
        self._trainer: weakref.ReferenceType | None = None
        self._warned_unbound = False

    # -- the history -------------------------------------------------------------------------------------------

    @property
    def history(self) -> History:
        """`(step, AttentionReport)` pairs in step order, one per probe."""
        return self._history

    @history.setter
    def history(self, value: Sequence[Any]) -> None:
        # Trainer's restore sets the JSON rows of `state()`; a user may set pairs.
        rows = list(value)
        self._history = history_from_json(rows) if rows and isinstance(rows[0], Mapping) else [tuple(r) for r in rows]

    # -- the Trainer -------------------------------------------------------------------------------------------

    def bind(self, trainer: Trainer) -> AttentionCollapseCallback:
        """Log through `trainer.log` (so `report_to` integrations see the values); adds itself to the trainer's
        callbacks if it is not there yet. Returns the callback. Held by weak reference: it keeps no trainer alive."""
        from transformers import Trainer

        if not isinstance(trainer, Trainer):
            raise InherituneError(f"bind() takes the transformers.Trainer that trains the model, got {type(trainer)}.")
        if not any(callback is self for callback in trainer.callback_handler.callbacks):
            trainer.add_callback(self)
        self._trainer = weakref.ref(trainer)
        return self

    @classmethod
    def of(cls, trainer: Trainer) -> list[AttentionCollapseCallback]:
        """The attention callbacks `trainer` runs (after a restore from a checkpoint, the copies it swapped in)."""
        return [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, cls)]

    def _arguments(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids.tolist(),
            "every_n_steps": self.every_n_steps,
            "tau": self.tau,
            "eta": self.eta,
            "batch_size": self.batch_size,
        }

    def state(self) -> dict[str, Any]:
        """What Trainer saves in `trainer_state.json` (`ExportableState`): the arguments and the history."""
        return {"args": self._arguments(), "attributes": {"history": history_to_json(self._history)}}

    def _restore(self, state: Any) -> None:
        """On resume: the history saved in the checkpoint this training resumed from (up to its step)."""
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        candidates = saved if isinstance(saved, list) else [saved] if saved else []
        mine = self._arguments()
        rows = next((c["attributes"]["history"] for c in candidates if c.get("args") == mine), None)
        if rows is None:
            kept = [(step, report) for step, report in self._history if step <= state.global_step]
            if not kept:
                logger.warning(
                    "AttentionCollapseCallback: the checkpoint holds no attention history for these samples and "
                    "settings; the history starts at step %d.",
                    state.global_step,
                )
            self._history = kept
            return
        self._history = [(step, report) for step, report in history_from_json(rows) if step <= state.global_step]

    # -- the probe ---------------------------------------------------------------------------------------------

    def _log(self, args: TrainingArguments, state: Any, metrics: dict[str, float]) -> None:
        trainer = self._trainer() if self._trainer is not None else None
        if trainer is not None and trainer.state is state:
            # Trainer's on_log clears control.should_log, which DefaultFlowCallback set for this step's loss log: left
            # cleared, the main process would skip that log and its all-reduce, and DDP's processes would then pair
            # mismatched collectives. The flag is put back as it was.
            should_log = trainer.control.should_log
            trainer.log(dict(metrics))
            trainer.control.should_log = should_log
            return
        state.log_history.append({**metrics, "step": state.global_step})
        if not self._warned_unbound and [name for name in (args.report_to or []) if name != "none"]:
            self._warned_unbound = True
            logger.warning(
                "AttentionCollapseCallback is not bound to its Trainer: the values go to state.log_history only, "
                "not to report_to=%s. Call callback.bind(trainer) before trainer.train().",
                args.report_to,
            )

    def _probe(self, args: TrainingArguments, state: Any, model: torch.nn.Module | None) -> None:
        if not state.is_world_process_zero or model is None:
            return
        if self._history and self._history[-1][0] >= state.global_step:
            return  # this step is measured already (e.g. saved in the checkpoint this training resumed from)
        report = analyze_attention(
            model,
            input_ids=self.input_ids,
            num_samples=self.input_ids.shape[0],
            seq_len=self.input_ids.shape[1],
            tau=self.tau,
            eta=self.eta,
            batch_size=self.batch_size,
            progress=False,
        )
        self._history.append((state.global_step, report))
        self._log(args, state, attention_metrics(report))

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        check_trackable(args, model)  # on every process, so none is left waiting for one that refused
        if state.stateful_callbacks is not None and type(self).__name__ not in state.stateful_callbacks:
            # A checkpoint saved without this callback: Trainer would fail to save its state at the next checkpoint.
            state.stateful_callbacks[type(self).__name__] = self.state()
        if state.global_step > 0:
            self._restore(state)
        else:
            self._history = []
        self._probe(args, state, model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_n_steps == 0 or control.should_training_stop:
            self._probe(args, state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._probe(args, state, model)  # a stop that on_step_end could not see (an early stop at evaluation)


# ---------------------------------------------------------------------------------------------------------------
# Samples, and tracking a whole run
# ---------------------------------------------------------------------------------------------------------------


def attention_samples(dataset: Any, num_samples: int = 100, seq_len: int = 100, seed: int = 0) -> torch.Tensor:
    """`num_samples` windows of `seq_len` tokens at seeded random offsets of a packed dataset's token stream (or,
    when every block starts with the same BOS token, the first `seq_len` tokens of seeded random blocks: see
    `analyze.sample_source`).

    The same windows `analyze_attention(model, input_ids=<the stream>, num_samples=..., seq_len=..., seed=...)`
    draws (and the recipe's diagnosis, from the same validation set and seed), so the callback's last report and
    the diagnosis of the trained model measure the same text. `dataset` has an `input_ids` column (a
    `datasets.Dataset` or `IterableDataset` of packed blocks, as `inheritune_hf.data` makes them).
    """
    check_arguments({"num_samples": num_samples, "seq_len": seq_len, "seed": seed}, AnalyzeArguments.RANGES)
    columns = getattr(dataset, "column_names", None) or []
    if "input_ids" not in columns:
        raise DataError(f"Attention samples need a tokenized dataset with input_ids (columns: {list(columns)}).")
    try:
        length = len(dataset)
    except TypeError:  # an IterableDataset: the first blocks, as many as the paper's draws could use
        rows, total = [], 0
        for row in dataset:
            rows.append(torch.as_tensor(row["input_ids"]).reshape(-1))
            total += rows[-1].numel()
            if total >= 100 * num_samples * seq_len:
                break
        stream = sample_source(torch.stack(rows)) if rows else torch.zeros(0, dtype=torch.long)
    else:
        if length == 0:
            raise DataError("The validation set is empty: there are no attention samples to draw.")
        stream = sample_source(dataset[:]["input_ids"])
    return draw_samples(stream.long(), num_samples, seq_len, seed)


class AttentionTracking:
    """What `--track_attention_steps N` attaches to a run: fixed samples, one callback per stage, the histories.

    `stages` maps a stage name ("reference", "round_1", ..., "baseline") to its history. `record` takes a finished
    stage's history from its trainer; `write` puts `attention_history.json` and `attention_history.png` in a folder
    (main process only).
    """

    def __init__(self, samples: torch.Tensor, every_n_steps: int, stages: Mapping[str, History] | None = None):
        check_arguments({"every_n_steps": every_n_steps}, {"every_n_steps": POSITIVE_INT})
        self.samples = torch.as_tensor(samples).long()
        self.every_n_steps = every_n_steps
        self.stages: dict[str, History] = dict(stages or {})

    @classmethod
    def from_dataset(
        cls, dataset: Any, every_n_steps: int, num_samples: int = 100, seq_len: int = 100, seed: int = 0
    ) -> AttentionTracking:
        """Samples drawn once from `dataset` (the validation set), seeded, as `attention_samples` draws them."""
        return cls(attention_samples(dataset, num_samples, seq_len, seed), every_n_steps)

    def callback(self) -> AttentionCollapseCallback:
        """A fresh callback on this run's samples, for one stage's training."""
        return AttentionCollapseCallback(self.samples, every_n_steps=self.every_n_steps)

    def record(self, stage: str, trainer: Trainer) -> History:
        """Keep the history of the callback `trainer` ran on these samples as `stage`'s (empty on other processes)."""
        callbacks = [c for c in AttentionCollapseCallback.of(trainer) if torch.equal(c.input_ids, self.samples)]
        history = list(callbacks[-1].history) if callbacks else []
        self.stages[stage] = history
        return history

    def load(self, path: str | os.PathLike) -> None:
        """Add the stages of an earlier process's file (a resumed run) that this tracking does not hold yet."""
        path = Path(path)
        if path.is_file():
            for stage, history in read_attention_history(path).items():
                self.stages.setdefault(stage, history)

    def write(self, folder: str | os.PathLike, plot: bool = True) -> Path | None:
        """`attention_history.json` (and, with `plot`, `attention_history.png`) in `folder`, by the main process."""
        from accelerate import PartialState

        if not PartialState().is_main_process:
            return None
        folder = Path(folder)
        path = write_attention_history(folder / ATTENTION_HISTORY_FILE, self.stages)
        if plot and any(self.stages.values()):
            try:
                plot_attention_history(self.stages, folder / ATTENTION_FIGURE_FILE)
            except InherituneError as err:  # no matplotlib: the numbers are written, the figure is not
                logger.warning("%s", err)
        return path
