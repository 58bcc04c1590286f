"""The method's settings: one dataclass per entry point, parsed by `HfArgumentParser` from flags or a YAML file.

Every entry point reads its settings from these dataclasses, so the same thing has the same name everywhere
(`--dataset_name`, `--output_dir`, `--reinit`, `--trust_remote_code`) and a YAML file's keys are the flag names.
The `inheritune` subcommands and the recipe scripts parse them with `inheritune_hf.parser.InherituneParser`,
a notebook can build them directly (`InherituneArguments(start_layers=12)`).

This module sits low in the package, beside `errors`: it imports nothing of the method, so any step (and the CLI
above them all) can import it without a circle. The constants the settings validate against live here for the
same reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .errors import DataError, InherituneError, InvalidArgumentError, InvalidLayersError, TrainingError

#: The parts `inherit` can re-initialise instead of copying.
REINIT_PARTS = ("position_embeddings", "embedding_norm", "final_norm", "lm_head", "blocks")
#: What the authors' nanoGPT code left at fresh init: position embeddings and the final norm.
NANOGPT_REINIT = ("position_embeddings", "final_norm")
#: How a round grows: the paper's `restart` from the reference, or `continue` the trained blocks.
GROWTH_STRATEGIES = ("restart", "continue")
#: How the distillation weight alpha moves over a round: held, decayed linearly to 0 at the round's last step, or
#: held until the validation loss first reaches the target and 0 from there on.
DISTILLATION_SCHEDULES = ("constant", "linear_decay", "until_target")
#: `dataset_name` of the default offline corpus: the Python 3.11 documentation sources shipped in the package,
#: checked by sha256, so the same bytes on every machine and Python.
EMBEDDED_CORPUS = "python-docs"
#: `dataset_name` of the other offline corpus: the running Python's standard library sources. Machine-dependent
#: (pyenv's 3.11 has ~13,000 files, Debian's ~670), so results on it do not reproduce across machines.
STDLIB_CORPUS = "stdlib"
#: The offline corpora `dataset_name` accepts by name.
EMBEDDED_CORPORA = (EMBEDDED_CORPUS, STDLIB_CORPUS)
#: Weight dtypes `inheritune inherit --dtype` casts to.
DTYPES = ("float32", "float16", "bfloat16")


def check_distillation(
    weight: float,
    temperature: float,
    schedule: str,
    *,
    target: float | str | None = "reference",
    evaluates: bool = True,
) -> None:
    """Refuse distillation settings that would train on a meaningless loss, with one line that says why.

    The loss is `(1 - alpha) * CE + alpha * T^2 * KL(teacher || student)`: alpha outside [0, 1] makes one term
    negative (training would push away from the data or the teacher), and T must be a positive finite number.
    The 'until_target' schedule stops distilling at the first evaluation that reaches `target` (a loss, or
    'reference'), so it needs one, and periodic evaluation (`evaluates`) to notice.
    """
    if not (isinstance(weight, int | float) and math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise TrainingError(
            f"distillation_weight (alpha) must lie in [0, 1] (0: the paper's plain loss), got {weight!r}."
        )
    if not (isinstance(temperature, int | float) and math.isfinite(temperature) and temperature > 0):
        raise TrainingError(
            f"distillation_temperature must be a finite number > 0 (1: no softening), got {temperature!r}."
        )
    if schedule not in DISTILLATION_SCHEDULES:
        raise TrainingError(f"distillation_schedule must be one of {DISTILLATION_SCHEDULES}, got {schedule!r}.")
    if schedule == "until_target" and weight > 0:
        if target is None:
            raise TrainingError(
                "distillation_schedule='until_target' needs the target loss to stop distilling at: give "
                "DistillationConfig a target (run_inheritune gives the round's match threshold), or use another "
                "schedule."
            )
        if not evaluates:
            raise TrainingError(
                "distillation_schedule='until_target' notices the target at evaluations: set eval_strategy='steps' "
                "and eval_steps in TrainingArguments, or use another schedule."
            )


@dataclass(frozen=True)
class DistillationConfig:
    """How a round heals by distillation: one object handed whole from the settings to the trainer.

    TRL's way (`GKDConfig` for `GKDTrainer`): `InherituneArguments.distillation(target)` builds it,
    `rounds.run_inheritune` hands it to `train`, and `train` to `distill.DistillationTrainer`. The loss is
    `(1 - weight) * CE + weight * temperature^2 * KL(teacher || student)`; `schedule` moves the weight over a round
    (`DISTILLATION_SCHEDULES`), and `target` is the validation loss at which 'until_target' stops distilling (the
    round's match threshold). A config is checked when it is made (`check_distillation`), so a bad one never reaches
    a trainer.
    """

    weight: float = 0.0
    temperature: float = 1.0
    schedule: str = "constant"
    target: float | None = None

    def __post_init__(self) -> None:
        check_distillation(self.weight, self.temperature, self.schedule, target=self.target)

    @property
    def enabled(self) -> bool:
        """Whether a round trains against the teacher at all (weight 0 trains exactly as without one)."""
        return self.weight > 0

    def check_evaluates(self, evaluates: bool) -> None:
        """Refuse 'until_target' without periodic evaluation, the only place it can notice the target."""
        check_distillation(self.weight, self.temperature, self.schedule, target=self.target, evaluates=evaluates)


def as_target_loss(value: Any) -> float:
    """`value` as a finite float, or a `TrainingError` that says what was wrong."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TrainingError(f"The target loss must be a number or 'reference', got {value!r}.") from None
    if not math.isfinite(number) or number < 0:
        raise TrainingError(f"The target loss must be a finite, non-negative number, got {value!r}.")
    return number


def _check_reinit(parts: list[str], error: type[InherituneError]) -> None:
    unknown = [part for part in parts if part not in REINIT_PARTS]
    if unknown:
        raise error(f"Unknown reinit part(s) {unknown}; choose from {list(REINIT_PARTS)}.")


# ---------------------------------------------------------------------------------------------------------------
# Ranges: every numeric setting checked where it is declared, with one line naming the flag and what it allows
# ---------------------------------------------------------------------------------------------------------------

#: The largest seed numpy accepts (torch and random take more): a seed is checked against the narrowest consumer.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Range:
    """The values a numeric setting allows: an interval (either end open or closed, or unbounded), integers only or
    any finite number, and a few `special` values outside the interval that mean something (`--max_steps -1`).

    A settings dataclass lists its numeric fields in a `RANGES` table and checks them in `__post_init__` with
    `check_ranges`, the way transformers' `TrainingArguments.__post_init__` checks its own: a bad value stops the
    command in one line before any data is read, model loaded or file written, instead of a traceback mid-run (or,
    worse, a run that trains 29,259 steps for `--max_steps -3`).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    special: tuple[float, ...] = ()
    meaning: str = ""

    def __contains__(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if value in self.special:
            return True
        if self.integer and not isinstance(value, int):  # 2.0 from a YAML file would reach range() as a float
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The allowed values in words: 'an integer >= 1', 'a number in (0, 1]', '... or -1 (meaning)'."""
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            text = f"{kind} in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
            text += ")" if self.high_open else "]"
        elif self.low is not None:
            text = f"{kind} {'>' if self.low_open else '>='} {_number(self.low)}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.high_open else '<='} {_number(self.high)}"
        else:
            text = f"a finite {kind.split()[-1]}"
        if self.special:
            text += ", or " + " or ".join(_number(v) for v in self.special)
            text += f" ({self.meaning})" if self.meaning else ""
        return text


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


#: Ranges used by several tables.
POSITIVE_INT = Range(low=1, integer=True)
NON_NEGATIVE_INT = Range(low=0, integer=True)
POSITIVE = Range(low=0, low_open=True)
NON_NEGATIVE = Range(low=0)
FRACTION = Range(low=0, high=1, low_open=True)  # (0, 1]: a share of something that must not be empty
SEED = Range(low=0, high=MAX_SEED, integer=True)


def check_ranges(settings: Any, ranges: dict[str, Range], error: type[InherituneError], prefix: str = "--") -> None:
    """Refuse the first field of `settings` outside its `ranges` entry with one line naming the flag (`--seq_len`)
    and what it allows. None means "not set" (the default applies); a list is checked element by element."""
    for name, allowed in ranges.items():
        value = getattr(settings, name, None)
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if item is not None and item not in allowed:
                raise error(f"{prefix}{name} must be {allowed.describe()}, got {item!r}.")


def check_arguments(
    values: dict[str, Any], ranges: dict[str, Range], error: type[InherituneError] = InvalidArgumentError
) -> None:
    """`check_ranges` for a library function's keyword arguments, against the same table as its CLI flags (so
    `analyze_attention(seq_len=1)` and `inheritune analyze --seq_len 1` are refused alike), naming `seq_len`."""
    from types import SimpleNamespace

    check_ranges(SimpleNamespace(**values), {name: ranges[name] for name in values}, error, prefix="")


#: `transformers.TrainingArguments` fields this package relies on, with what makes sense for them. Trainer checks
#: few of these itself: `max_steps -3` trains for epochs, `learning_rate -1` fails inside the optimizer mid-run.
TRAINING_RANGES: dict[str, Range] = {
    "max_steps": Range(low=1, integer=True, special=(-1,), meaning="train --num_train_epochs instead"),
    "num_train_epochs": POSITIVE,
    "learning_rate": POSITIVE,
    "per_device_train_batch_size": POSITIVE_INT,
    "per_device_eval_batch_size": POSITIVE_INT,
    "gradient_accumulation_steps": POSITIVE_INT,
    "eval_accumulation_steps": POSITIVE_INT,
    # transformers 5 reads a warmup, eval, logging or save interval below 1 as a fraction of the training steps.
    "warmup_steps": NON_NEGATIVE,
    "warmup_ratio": Range(low=0, high=1),
    "eval_steps": POSITIVE,
    "logging_steps": POSITIVE,
    "save_steps": POSITIVE,
    "save_total_limit": POSITIVE_INT,
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": Range(low=0, high=1, high_open=True),
    "adam_beta2": Range(low=0, high=1, high_open=True),
    "adam_epsilon": POSITIVE,
    "max_grad_norm": NON_NEGATIVE,
    "label_smoothing_factor": Range(low=0, high=1, high_open=True),
    "seed": SEED,
    "data_seed": SEED,
    "dataloader_num_workers": NON_NEGATIVE_INT,
}


def check_batch_size(value: str | int, name: str = "--batch_size") -> None:
    """lm-eval's batch size: a positive integer, 'auto', or 'auto:N' (re-detect N times)."""
    text = "" if isinstance(value, bool | float) else str(value)  # 16.0 is not a batch size lm-eval takes
    head, _, times = text.partition(":")
    if text.isdigit() and int(text) >= 1 or head == "auto" and (not times or times.isdigit() and int(times) >= 1):
        return
    raise InvalidArgumentError(f"{name} must be an integer >= 1, 'auto' or 'auto:N', got {value!r}.")


def check_training_arguments(training_args: Any) -> None:
    """Refuse `transformers.TrainingArguments` values outside `TRAINING_RANGES`, in one line naming the flag.

    Called by every entry point that trains (`inheritune run`, the recipes, `run_inheritune`, `train`) before any
    data is read or file written: Trainer would otherwise accept them and fail (or quietly do something else) later.
    """
    check_ranges(training_args, TRAINING_RANGES, TrainingError)


# ---------------------------------------------------------------------------------------------------------------
# analyze: which layers are lazy?
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class AnalyzeArguments:
    """`inheritune analyze MODEL_DIR`: the paper's attention diagnostics (rank k*, mass m*) per layer and head."""

    _argument_group_name = "analyze (the paper's attention diagnostics)"

    model: str | None = field(
        default=None, metadata={"help": "Checkpoint folder (save_pretrained layout) with its tokenizer. Positional."}
    )
    text_file: str | None = field(default=None, metadata={"help": "A plain-text file to draw the windows from."})
    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Instead of --text_file: a Hub dataset name or local text/JSON file or folder, optionally "
            "NAME:split (default split: validation, as in the paper), as `inheritune run` reads it. Default: the "
            f"embedded corpus ('{EMBEDDED_CORPUS}', the Python docs, fixed bytes); '{STDLIB_CORPUS}' is this "
            "Python's stdlib (machine-dependent)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_revision: str | None = field(
        default=None, metadata={"help": "Hub dataset revision (branch, tag or commit), as for `inheritune run`."}
    )
    text_column: str = field(default="text", metadata={"help": "Dataset column holding the text."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path. Default: the model folder's own tokenizer."}
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Output folder (required); must be empty or absent unless --overwrite."}
    )
    num_samples: int = field(default=100, metadata={"help": "Random windows N (paper: 100)."})
    seq_len: int = field(default=100, metadata={"help": "Tokens per window T (paper: 100)."})
    tau: float = field(default=0.9, metadata={"help": "Spectral energy fraction for the rank (paper: 0.9)."})
    eta: float = field(default=0.9, metadata={"help": "Frobenius mass fraction for the mass (paper: 0.9)."})
    batch_size: int = field(default=8, metadata={"help": "Windows per forward pass."})
    seed: int = field(default=0, metadata={"help": "Seed of the window offsets."})
    device: str | None = field(default=None, metadata={"help": "Device (default: cuda if available, else cpu)."})
    plot: bool = field(
        default=True, metadata={"help": "Write attention_rank.png (needs matplotlib); --no_plot skips."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from MODEL."})

    RANGES: ClassVar[dict[str, Range]] = {
        "num_samples": POSITIVE_INT,
        "seq_len": Range(low=2, integer=True),  # one token attends only to itself: no rank to measure
        "tau": FRACTION,
        "eta": FRACTION,
        "batch_size": POSITIVE_INT,
        "seed": SEED,
    }

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, InvalidArgumentError)
        if self.model is None:
            raise InherituneError("Name the checkpoint to analyze: inheritune analyze MODEL_DIR ...")
        if self.text_file is not None and self.dataset_name is not None:
            raise DataError("Give one text source: --text_file FILE or --dataset_name NAME[:split], not both.")
        if self.output_dir is None:
            raise InherituneError("Name the output folder: --output_dir DIR.")


# ---------------------------------------------------------------------------------------------------------------
# inherit: slice a smaller model from a checkpoint
# ---------------------------------------------------------------------------------------------------------------


#: How `select_layers` (and `inheritune inherit --select`) chooses the blocks to keep.
SELECTION_CRITERIA = ("prefix", "rank", "block_influence", "angular")


@dataclass
class InheritArguments:
    """`inheritune inherit SRC OUT`: the Inheritune target sliced from a checkpoint on disk, streamed lazily."""

    _argument_group_name = "inherit (slice the first K blocks into a new checkpoint)"

    reference_model: str | None = field(
        default=None,
        metadata={"help": "SRC: the reference, a save_pretrained folder with safetensors weights or a Hub repo id."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "OUT: output folder; must be empty or absent unless --overwrite."}
    )
    num_layers: int | None = field(
        default=None, metadata={"help": "Keep the first K blocks (default: half of the reference)."}
    )
    layers: list[int] | None = field(
        default=None, metadata={"help": "Instead of --num_layers: explicit source block indices, e.g. 0 1 2 5."}
    )
    select: str | None = field(
        default=None,
        metadata={
            "help": "Choose which K blocks to keep from --report: prefix (the paper's first K), rank (drop the "
            "lowest MaxRank, the lazy blocks), block_influence (drop the lowest BI, ShortGPT) or angular (drop the "
            "span of blocks with the smallest angular distance, Gromov et al.).",
            "choices": list(SELECTION_CRITERIA),
        },
    )
    report: str | None = field(
        default=None,
        metadata={"help": "With --select: the folder `inheritune analyze` wrote (its report.json), or the file."},
    )
    reinit: list[str] = field(
        default_factory=list,
        metadata={
            "help": f"Parts to re-initialise instead of copying, any of: {' '.join(REINIT_PARTS)}. "
            "'position_embeddings final_norm' matches the authors' nanoGPT code."
        },
    )
    random_init: bool = field(default=False, metadata={"help": "Same-size random-init baseline."})
    dtype: str | None = field(
        default=None,
        metadata={"help": "Cast floating weights (default: keep the checkpoint's).", "choices": list(DTYPES)},
    )
    max_shard_size: str | None = field(
        default=None,
        metadata={"help": "Cap per output safetensors shard, e.g. 2GB (default: inherit_checkpoint's, 5GB)."},
    )
    revision: str | None = field(default=None, metadata={"help": "Branch, tag or commit when SRC is a Hub repo id."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from SRC."})

    RANGES: ClassVar[dict[str, Range]] = {"num_layers": POSITIVE_INT, "layers": NON_NEGATIVE_INT}

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, InvalidLayersError)
        if self.reference_model is None or self.output_dir is None:
            raise InherituneError("Name the reference and the output folder: inheritune inherit SRC OUT ...")
        if self.num_layers is not None and self.layers is not None:
            raise InvalidLayersError("Give --num_layers or --layers, not both.")
        if self.select is not None and self.layers is not None:
            raise InvalidLayersError("Give --select (which K blocks by a criterion) or --layers, not both.")
        if self.select not in (None, "prefix") and self.report is None:
            raise InvalidLayersError(
                f"--select {self.select} reads the measures from a report: add --report DIR (written by "
                "`inheritune analyze`)."
            )
        if self.report is not None and self.select is None:
            raise InvalidLayersError("--report is read only with --select CRITERION; add one.")
        _check_reinit(self.reinit, InvalidLayersError)


# ---------------------------------------------------------------------------------------------------------------
# run: the Inheritune loop (with DataArguments and transformers.TrainingArguments)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DataArguments:
    """Where the training text comes from and how it is cut into blocks (parsed beside `TrainingArguments`)."""

    _argument_group_name = "data (the training text and its blocks)"

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset name, local file or folder of .txt/.json/.jsonl files. "
            f"Default: the embedded corpus ('{EMBEDDED_CORPUS}': the Python 3.11 documentation, the same bytes on every "
            f"machine). '{STDLIB_CORPUS}': this Python's standard library sources (differs between machines)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    dataset_revision: str | None = field(
        default=None,
        metadata={
            "help": "Hub dataset revision (branch, tag or commit). 'refs/convert/parquet' reads the Hub's parquet "
            "conversion of a dataset that only a loading script can read, which datasets >= 4 refuses to run."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the raw text."})
    block_size: int = field(default=1024, metadata={"help": "Tokens per training sample (the paper: 1024)."})
    start_blocks_with_bos: bool = field(
        default=False,
        metadata={
            "help": "Start every block with the tokenizer's BOS token, as GPT-2 and Llama are trained: a fixed first "
            "position, where attention sinks (single-column, rank-1 heads) form."
        },
    )
    validation_fraction: float = field(
        default=0.05, metadata={"help": "Share of documents held out when the source has no validation split."}
    )
    streaming: bool = field(default=False, metadata={"help": "Stream a Hub dataset instead of downloading it."})
    streaming_validation_documents: int = field(
        default=2000, metadata={"help": "With --streaming: the first N documents form the validation split."}
    )
    max_train_documents: int | None = field(default=None, metadata={"help": "Keep at most N training documents."})
    corpus_max_files: int | None = field(default=None, metadata={"help": "Embedded corpus: at most N files."})
    corpus_max_bytes: int | None = field(default=None, metadata={"help": "Embedded corpus: at most N bytes."})
    tokenizer_name: str | None = field(
        default=None,
        metadata={"help": "Tokenizer name or path. Default: the reference model's own tokenizer."},
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for datasets.map."})
    split_seed: int = field(default=0, metadata={"help": "Seed of the deterministic validation split."})

    RANGES: ClassVar[dict[str, Range]] = {
        "block_size": Range(low=2, integer=True),  # a causal LM predicts token t+1 from t: a block needs two
        "validation_fraction": Range(low=0, high=1, low_open=True, high_open=True),
        "streaming_validation_documents": POSITIVE_INT,
        "max_train_documents": POSITIVE_INT,
        "corpus_max_files": POSITIVE_INT,
        "corpus_max_bytes": POSITIVE_INT,
        "preprocessing_num_workers": POSITIVE_INT,
        "split_seed": SEED,
    }

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, DataError)


@dataclass
class InherituneArguments:
    """The method's own settings, parsed beside `TrainingArguments` by `HfArgumentParser` (flags or YAML).

    Defaults are the paper's: start from half the reference's blocks, grow by 2, stop when the validation
    loss matches the reference's, restart each round from the reference's first l+2 blocks.
    """

    _argument_group_name = "Inheritune (the method: inherit, train, grow until the reference is matched)"

    reference_model: str | None = field(
        default=None, metadata={"help": "CLI: the trained reference model (Hub name or save_pretrained folder)."}
    )
    start_layers: int | None = field(
        default=None,
        metadata={
            "help": "Blocks inherited in the first round. Default: half the reference's (L/2), moved to the nearest depth "
            "its layer pattern allows (valid_num_layers)."
        },
    )
    grow_by: int = field(default=2, metadata={"help": "Blocks added per round (the paper: 2)."})
    max_layers: int | None = field(
        default=None, metadata={"help": "Stop growing at this many blocks. Default: the reference's depth L."}
    )
    target_loss: str = field(
        default="reference",
        metadata={"help": "Validation loss to match: 'reference' (the reference's own, measured) or a number."},
    )
    reference_loss: float | None = field(
        default=None, metadata={"help": "The reference's validation loss, if known; skips measuring it."}
    )
    tolerance: float = field(
        default=0.0, metadata={"help": "A round matches when its validation loss <= target + tolerance."}
    )
    growth_strategy: str = field(
        default="restart",
        metadata={
            "help": "'restart' (the paper): each round inherits the reference's first l+grow_by blocks afresh. "
            "'continue': keep the trained blocks and append the reference's next ones.",
            "choices": list(GROWTH_STRATEGIES),
        },
    )
    growth_lr_scale: float = field(
        default=1.0,
        metadata={
            "help": "Peak learning rate of the growth rounds (round 2 on), as a fraction of learning_rate. 1.0 is "
            "the paper's full schedule every round. A lower peak disturbs the kept blocks less, but on the tiny "
            "benchmark (bench_train.py) it cost more tokens to match, not fewer."
        },
    )
    growth_warmup_steps: int | None = field(
        default=None, metadata={"help": "Warmup steps of the growth rounds; default: warmup_steps, as in round 1."}
    )
    stop_at_target: bool = field(
        default=False,
        metadata={
            "help": "Stop a round as soon as an evaluation reaches the target (saves compute; the paper trains "
            "each round's full schedule)."
        },
    )
    max_eval_blocks: int | None = field(
        default=None, metadata={"help": "Eval budget: evaluate on at most this many validation blocks."}
    )
    reinit: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Parts to re-initialise instead of inheriting, e.g. position_embeddings final_norm "
            "(the authors' nanoGPT code)."
        },
    )
    random_baseline: bool = field(
        default=False,
        metadata={"help": "Also train the same-size random-init model on one round's budget (the paper's baseline)."},
    )
    distillation_weight: float = field(
        default=0.0,
        metadata={
            "help": "alpha in [0, 1]: each round (and the random baseline) trains on (1 - alpha) * CE + alpha * T^2 * "
            "KL(reference || model) over the same tokens, the reference as teacher. 0 (default): the paper's plain loss."
        },
    )
    distillation_temperature: float = field(
        default=1.0, metadata={"help": "T > 0: the softmax temperature of the distillation term (1: none)."}
    )
    distillation_schedule: str = field(
        default="constant",
        metadata={
            "help": "alpha over a round: 'constant'; 'linear_decay' to 0 at the round's last step (the student may "
            "end better than its teacher once the teacher stops pulling); or 'until_target': alpha until an "
            "evaluation first reaches the target loss, then the plain loss (and no teacher forwards) for the rest.",
            "choices": list(DISTILLATION_SCHEDULES),
        },
    )
    track_attention_steps: int = field(
        default=0,
        metadata={
            "help": "Watch attention collapse: every N steps of the reference's training (when the run trains it) and "
            "of every round, measure each layer's attention rank and mass on fixed validation samples, log them, and "
            "write attention_history.json and .png in the run folder. 0: off."
        },
    )
    track_attention_samples: int = field(
        default=32,
        metadata={
            "help": "Validation windows per attention probe (of 100 tokens, or the recipe's analyze_seq_len), drawn "
            "once. The diagnosis uses the paper's 100; 32 keep probes every 100 steps within 5% of the demo's "
            "training time (benchmarks/bench_track.py)."
        },
    )
    resume: bool = field(
        default=False, metadata={"help": "Resume an interrupted run in output_dir at the round and step it reached."}
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output_dir."})
    plot: bool = field(default=True, metadata={"help": "Write loss_curves.png (needs matplotlib)."})

    RANGES: ClassVar[dict[str, Range]] = {
        "start_layers": POSITIVE_INT,
        "grow_by": POSITIVE_INT,
        "max_layers": POSITIVE_INT,
        "reference_loss": NON_NEGATIVE,
        "tolerance": NON_NEGATIVE,
        "growth_lr_scale": POSITIVE,
        "growth_warmup_steps": NON_NEGATIVE,
        "max_eval_blocks": POSITIVE_INT,
        "distillation_weight": Range(low=0, high=1),
        "distillation_temperature": POSITIVE,
        "track_attention_steps": NON_NEGATIVE_INT,
        "track_attention_samples": POSITIVE_INT,
    }

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, TrainingError)
        if self.growth_strategy not in GROWTH_STRATEGIES:
            raise TrainingError(
                f"--growth_strategy must be one of {', '.join(GROWTH_STRATEGIES)}, got {self.growth_strategy!r}."
            )
        if self.start_layers is not None and self.max_layers is not None and self.max_layers < self.start_layers:
            raise TrainingError(
                f"--max_layers {self.max_layers} is below --start_layers {self.start_layers}: the rounds grow from "
                "start_layers up to max_layers."
            )
        _check_reinit(self.reinit, TrainingError)
        check_distillation(
            self.distillation_weight,
            self.distillation_temperature,
            self.distillation_schedule,
            target=self.target_loss,
        )
        if self.target_loss != "reference":
            self.target_loss = str(as_target_loss(self.target_loss))
        if self.reference_loss is not None:
            as_target_loss(self.reference_loss)

    def target(self, reference_loss: float) -> float:
        """The validation loss a round must reach: the reference's, or the number given."""
        return reference_loss if self.target_loss == "reference" else float(self.target_loss)

    def distillation(self, target: float | None = None) -> DistillationConfig:
        """The distillation settings as one `DistillationConfig`, stopping ('until_target') at `target`."""
        return DistillationConfig(
            self.distillation_weight, self.distillation_temperature, self.distillation_schedule, target=target
        )


# ---------------------------------------------------------------------------------------------------------------
# evaluate and push: downstream scores, then the Hub
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class EvaluateArguments:
    """`inheritune evaluate MODEL_DIR`: zero-shot lm-evaluation-harness scores, as in the paper's Table 2."""

    _argument_group_name = "evaluate (lm-eval downstream scores)"

    model: str | None = field(
        default=None, metadata={"help": "Checkpoint folder (save_pretrained layout) with its tokenizer. Positional."}
    )
    tasks: list[str] | None = field(
        default=None,
        metadata={"help": "lm-eval task names or YAML paths (default: the paper's suite, with its metrics)."},
    )
    include_path: list[str] | None = field(
        default=None,
        metadata={"help": "Folder(s) of local lm-eval task YAMLs. Built-in tasks are indexed only if needed."},
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Output folder (required); must be empty or absent unless --overwrite."}
    )
    num_fewshot: int = field(default=0, metadata={"help": "Few-shot examples per prompt (paper: 0)."})
    batch_size: str = field(default="16", metadata={"help": "lm-eval batch size, or 'auto'."})
    limit: float | None = field(default=None, metadata={"help": "Only the first N documents per task (smoke test)."})
    device: str | None = field(default=None, metadata={"help": "Device (default: cuda if available, else cpu)."})
    overwrite: bool = field(default=False, metadata={"help": "Replace a non-empty output folder."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from MODEL."})

    RANGES: ClassVar[dict[str, Range]] = {"num_fewshot": NON_NEGATIVE_INT, "limit": POSITIVE}

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, InvalidArgumentError)
        check_batch_size(self.batch_size)
        if self.model is None:
            raise InherituneError("Name the checkpoint to evaluate: inheritune evaluate MODEL_DIR ...")
        if self.output_dir is None:
            raise InherituneError("Name the output folder: --output_dir DIR.")


@dataclass
class PushArguments:
    """`inheritune push MODEL_DIR REPO_ID`: one Hub commit with the weights, the model card, figures and results."""

    _argument_group_name = "push (publish to the Hub)"

    model: str | None = field(
        default=None, metadata={"help": "A save_pretrained folder, or a run_inheritune output folder. Positional."}
    )
    repo_id: str | None = field(
        default=None, metadata={"help": "namespace/name (or name, for your own namespace). Positional."}
    )
    private: bool = field(default=True, metadata={"help": "Create the repo private; --public (or --no_private) not."})
    dry_run: bool = field(default=False, metadata={"help": "Write what would be uploaded into --output_dir instead."})
    output_dir: str | None = field(default=None, metadata={"help": "Dry-run folder (default: ./<repo name>-dry-run)."})
    overwrite: bool = field(default=False, metadata={"help": "Let --dry_run replace a non-empty --output_dir."})
    results: str | None = field(
        default=None, metadata={"help": "Folder with downstream_results.json (what inheritune evaluate wrote)."}
    )
    tasks: list[str] | None = field(
        default=None, metadata={"help": "A run folder: evaluate its final model on these lm-eval tasks first."}
    )
    include_path: list[str] | None = field(default=None, metadata={"help": "Folder(s) of local lm-eval tasks."})
    figure: list[str] = field(default_factory=list, metadata={"help": "Images to upload and show in the card."})
    base_model: str | None = field(
        default=None, metadata={"help": "The reference's Hub id (default: from the lineage)."}
    )
    license: str | None = field(default=None, metadata={"help": "SPDX license id (default: the base model's)."})
    dataset_name: list[str] | None = field(
        default=None, metadata={"help": "Training dataset Hub id(s), named in the card."}
    )
    revision: str | None = field(default=None, metadata={"help": "Branch to commit to (default: main)."})
    commit_message: str | None = field(default=None, metadata={"help": "Commit summary."})
    endpoint: str | None = field(
        default=None, metadata={"help": "Hub URL (default: HF_ENDPOINT or https://huggingface.co)."}
    )

    def __post_init__(self) -> None:
        if self.model is None or self.repo_id is None:
            raise InherituneError("Name the folder and the repo: inheritune push MODEL_DIR REPO_ID ...")


# ---------------------------------------------------------------------------------------------------------------
# recipes: the whole pipeline (with InherituneArguments, DataArguments and TrainingArguments)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class RecipeArguments:
    """What a recipe runs around Inheritune: the reference (trained or given), the diagnosis, the evaluation."""

    _argument_group_name = "recipe (the reference, the diagnosis, the evaluation)"

    name: str = field(default="recipe", metadata={"help": "Name used in the report and the model card."})
    reference: str | None = field(
        default=None,
        metadata={"help": "A trained reference (folder or Hub id). Default: stage 1 trains one from scratch."},
    )
    model_type: str = field(default="gpt2", metadata={"help": "Architecture of a reference trained from scratch."})
    num_layers: int = field(default=24, metadata={"help": "Reference depth L when trained from scratch."})
    hidden_size: int = field(default=1024, metadata={"help": "Reference width when trained from scratch."})
    num_attention_heads: int = field(default=16, metadata={"help": "Reference heads when trained from scratch."})
    num_key_value_heads: int | None = field(default=None, metadata={"help": "KV heads (GQA) for llama-style types."})
    intermediate_size: int | None = field(default=None, metadata={"help": "MLP width; default: the type's rule."})
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config settings of a reference trained from scratch, as in transformers' run_clm.py: "
            "'resid_pdrop=0.0,scale_attn_by_inverse_layer_idx=true'. Ignored with --reference."
        },
    )
    vocab_size: int | None = field(
        default=None,
        metadata={"help": "Embedding rows; default: the tokenizer's size rounded up to a multiple of 64 (50304)."},
    )
    tokenizer_vocab_size: int = field(
        default=4096, metadata={"help": "Vocabulary of the BPE trained on the corpus when no tokenizer is given."}
    )
    tokens_per_step: int | None = field(
        default=None,
        metadata={
            "help": "Tokens per optimizer step to keep on any number of processes: gradient_accumulation_steps "
            "becomes tokens_per_step / (per-device batch x processes x block), rounded, within 10%."
        },
    )
    reference_max_steps: int | None = field(
        default=None, metadata={"help": "Steps for the reference; default max_steps (the paper: 100K for all)."}
    )
    analyze: bool = field(default=True, metadata={"help": "Run the attention diagnosis of the reference."})
    analyze_samples: int = field(default=100, metadata={"help": "Attention samples (the paper: 100)."})
    analyze_seq_len: int = field(default=100, metadata={"help": "Tokens per attention sample (the paper: 100)."})
    eval_tasks: str = field(
        default="heldout",
        metadata={
            "help": "'paper' (the paper's lm-eval suite, needs its datasets), 'heldout' (offline tasks built from "
            "the validation text), 'none', or comma-separated lm-eval task names."
        },
    )
    eval_limit: float | None = field(default=None, metadata={"help": "lm-eval `limit` per task."})
    eval_batch_size: int = field(default=16, metadata={"help": "lm-eval batch size."})
    hub_repo_id: str | None = field(
        default=None, metadata={"help": "Publish the final model (card, scores) to this repo (--push-to-hub REPO_ID)."}
    )
    private: bool = field(default=True, metadata={"help": "Create the Hub repo private."})
    budget: str | None = field(default=None, metadata={"help": "A named budget from the YAML's `budgets`."})
    smoke: bool = field(default=False, metadata={"help": "Tiny shapes, embedded corpus, a few steps (CPU)."})
    plan: bool = field(
        default=False,
        metadata={"help": "Print the run's shapes, tokens and compute (no data, no training), then exit."},
    )

    RANGES: ClassVar[dict[str, Range]] = {
        "num_layers": Range(low=2, integer=True),  # Inheritune inherits L/2 of them: at least one
        "hidden_size": POSITIVE_INT,
        "num_attention_heads": POSITIVE_INT,
        "num_key_value_heads": POSITIVE_INT,
        "intermediate_size": POSITIVE_INT,
        "vocab_size": POSITIVE_INT,
        "tokenizer_vocab_size": Range(low=257, integer=True),  # the byte-level BPE: 256 bytes and the EOS
        "tokens_per_step": POSITIVE_INT,
        "reference_max_steps": POSITIVE_INT,
        "analyze_samples": POSITIVE_INT,
        "analyze_seq_len": Range(low=2, integer=True),
        "eval_limit": POSITIVE,
        "eval_batch_size": POSITIVE_INT,
    }

    def __post_init__(self) -> None:
        check_ranges(self, self.RANGES, InvalidArgumentError)
        if self.reference is not None:
            return  # the shape fields describe a reference trained from scratch
        if self.hidden_size % self.num_attention_heads:
            raise InvalidArgumentError(
                f"--hidden_size {self.hidden_size} must be a multiple of --num_attention_heads "
                f"{self.num_attention_heads}: each head gets hidden_size / heads dimensions."
            )
        if self.num_key_value_heads is not None and self.num_attention_heads % self.num_key_value_heads:
            raise InvalidArgumentError(
                f"--num_attention_heads {self.num_attention_heads} must be a multiple of --num_key_value_heads "
                f"{self.num_key_value_heads}: each key-value head serves a group of query heads."
            )
