"""Step 4 of the method: downstream scores with lm-evaluation-harness, on the model in memory.

The paper (arXiv 2404.08634, Table 2) compares Inheritune models with their references zero-shot on
ARC-Easy, PIQA, SciQ, HellaSwag, LAMBADA, WinoGrande and BoolQ (accuracy; normalised accuracy for
HellaSwag), plus Wikitext word perplexity and LAMBADA perplexity, and reports the mean accuracy as
"Avg". `evaluate_downstream` runs exactly that suite through `lm_eval.simple_evaluate` with an `HFLM`
wrapping the `PreTrainedModel` you already hold, so nothing is saved and reloaded, and
`DownstreamResults` turns lm-eval's nested JSON into rows a model card (`model-index`) can carry.

lm-eval is the optional extra `inheritune-hf[eval]`; it is imported only when evaluation is asked for.
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import math
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .data import no_download_counts
from .errors import EvaluationError
from .io import atomic_write_text, jsonable, write_json
from .settings import POSITIVE_INT, SEED, EvaluateArguments, Range, check_arguments, check_batch_size

logger = logging.getLogger(__name__)

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import EvalResult
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "PAPER_TASKS",
    "DownstreamResult",
    "DownstreamResults",
    "check_tasks",
    "evaluate_downstream",
    "write_heldout_tasks",
]

#: The paper's downstream suite: lm-eval task name -> the metrics the paper reports for it.
#: Accuracy-type metrics (higher is better) make up the paper's "Avg" column; perplexities are reported beside it.
PAPER_TASKS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "arc_easy": ("acc",),
        "piqa": ("acc",),
        "sciq": ("acc",),
        "hellaswag": ("acc_norm",),
        "lambada_openai": ("acc", "perplexity"),
        "winogrande": ("acc",),
        "boolq": ("acc",),
        "wikitext": ("word_perplexity",),
    }
)

#: File names written by `DownstreamResults.save`, and uploaded beside the weights by `push_to_hub`.
RESULTS_FILENAME = "downstream_results.json"
RAW_RESULTS_FILENAME = "lm_eval_results.json"

# Builders of the `datasets` library that read local files: a task built on one of them has no Hub dataset id.
_LOCAL_BUILDERS = frozenset({"json", "csv", "text", "parquet", "arrow", "pandas", "imagefolder", "audiofolder"})
_PRETTY_METRICS = {
    "acc": "accuracy",
    "acc_norm": "normalized accuracy",
    "perplexity": "perplexity",
    "word_perplexity": "word perplexity",
    "byte_perplexity": "byte perplexity",
    "bits_per_byte": "bits per byte",
}
_PIP_HINT = "pip install 'inheritune-hf[eval]'"

TaskSpec = str | Mapping[str, Any]
Tasks = Mapping[str, Sequence[str] | None] | Sequence[TaskSpec] | str


@dataclass(frozen=True)
class DownstreamResult:
    """One number of a downstream evaluation: `metric` of `task`, with its standard error when lm-eval has one."""

    task: str
    metric: str
    value: float
    stderr: float | None = None
    higher_is_better: bool | None = None
    num_fewshot: int | None = None
    num_samples: int | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_split: str | None = None


#: Accuracy of a uniform guess, per task: 1 / the number of choices. A score at or below it carries no signal: the
#: model learned nothing the task measures (a tiny model on a short budget often lands there). `evaluate_downstream`
#: measures it for every multiple-choice task it scores (`DownstreamResults.chances`); this table is the fallback
#: for results saved without it. The offline held-out task of the recipes (`write_heldout_tasks`) is `heldout_mc`.
CHANCE_ACCURACY: Mapping[str, float] = MappingProxyType(
    {
        "arc_easy": 0.25,
        "arc_challenge": 0.25,
        "hellaswag": 0.25,
        "sciq": 0.25,
        "openbookqa": 0.25,
        "mmlu": 0.25,
        "heldout_mc": 0.25,
        "piqa": 0.5,
        "winogrande": 0.5,
        "boolq": 0.5,
        "copa": 0.5,
    }
)
_ACCURACIES = ("acc", "acc_norm")


@dataclass
class DownstreamResults:
    """The rows of a downstream evaluation plus lm-eval's raw results JSON, kept beside them unchanged.

    Rows are in the order tasks were asked for. `average` is the paper's "Avg": the mean over tasks of one
    accuracy-type row each (higher is better), as a fraction in [0, 1]; the paper prints it times 100.
    """

    rows: list[DownstreamResult]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    #: task -> the accuracy a uniform guess scores on the documents scored (`chance_levels`): measured, not assumed
    chances: dict[str, float] = field(default_factory=dict)

    @property
    def average(self) -> float | None:
        """Mean over tasks of one accuracy-type number each (higher is better), or None when there are none.

        A task scored by several accuracies (acc and acc_norm) counts once, by the first one asked for: the
        paper's Avg has one column per task (acc_norm for HellaSwag, acc elsewhere, as in `PAPER_TASKS`).
        """
        per_task: dict[str, float] = {}
        for row in self.rows:
            if row.higher_is_better:
                per_task.setdefault(row.task, row.value)
        return sum(per_task.values()) / len(per_task) if per_task else None

    def chance(self, task: str) -> float | None:
        """The accuracy of a uniform guess on `task`: as measured on its documents (`chances`), else from
        `CHANCE_ACCURACY`, else None."""
        return self.chances.get(task, CHANCE_ACCURACY.get(task))

    @property
    def chance_average(self) -> float | None:
        """The average a uniform guess would score over the same tasks, or None when a task's chance is unknown."""
        tasks = list(dict.fromkeys(row.task for row in self.rows if row.higher_is_better))
        chances = [self.chance(task) for task in tasks]
        return sum(chances) / len(chances) if chances and None not in chances else None

    def no_signal(self) -> list[DownstreamResult]:
        """The accuracy rows at or below their task's chance level: they say nothing about the model."""
        return [
            row
            for row in self.rows
            if row.metric in _ACCURACIES and self.chance(row.task) is not None and row.value <= self.chance(row.task)
        ]

    def chance_note(self) -> str | None:
        """One sentence for a reader when scores sit at or below chance (None when none does)."""
        rows = self.no_signal()
        chance, average = self.chance_average, self.average
        tasks = {row.task for row in self.rows if row.higher_is_better}
        below_average = len(tasks) > 1 and chance is not None and average is not None and average <= chance
        if not rows and not below_average:
            return None
        parts = [
            f"{row.task} {row.metric} {100 * row.value:.2f} (chance {100 * self.chance(row.task):.2f})" for row in rows
        ]
        if below_average:
            parts.append(f"the average {100 * average:.2f} (chance {100 * chance:.2f})")
        return (
            f"At or below chance, so carrying no signal: {'; '.join(parts)}. The model has not learned what these "
            "tasks measure; compare such scores only once they rise above chance."
        )

    def get(self, task: str, metric: str) -> DownstreamResult:
        """The row for `metric` of `task`; a KeyError names what is available otherwise."""
        for row in self.rows:
            if row.task == task and row.metric == metric:
                return row
        raise KeyError(f"No result for {task}/{metric}; have {[(r.task, r.metric) for r in self.rows]}")

    def to_dict(self) -> dict[str, Any]:
        """The rows and the average as plain JSON types (the raw lm-eval JSON is saved separately)."""
        return {"rows": [asdict(row) for row in self.rows], "average": self.average, "chance": self.chances}

    def to_markdown(self) -> str:
        """A Markdown table for a model card: accuracies in percent as the paper prints them, perplexities as is."""
        lines = ["| Task | Metric | Value | Stderr |", "|---|---|---:|---:|"]
        for row in self.rows:
            shots = f" ({row.num_fewshot}-shot)" if row.num_fewshot is not None else ""
            lines.append(
                f"| {row.task}{shots} | {row.metric} | {_format_value(row, row.value)} | "
                f"{_format_value(row, row.stderr) if row.stderr is not None else '-'} |"
            )
        if self.average is not None:
            chance = self.chance_average
            versus = f" (chance {100 * chance:.2f})" if chance is not None else ""
            lines.append(f"| **Average** | accuracy{versus} | **{100 * self.average:.2f}** | |")
        note = self.chance_note()
        return "\n".join(lines) + (f"\n\n*{note}*" if note else "")

    def to_eval_results(self, model_name: str | None = None) -> list[EvalResult]:
        """`huggingface_hub.EvalResult`s for `ModelCardData(eval_results=...)`, i.e. the card's `model-index`.

        `model_name` is accepted for symmetry with `ModelCardData` but not needed: the card data carries it.
        """
        from huggingface_hub import EvalResult

        del model_name
        results = []
        for row in self.rows:
            shots = row.num_fewshot if row.num_fewshot is not None else 0
            results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name="Text Generation",
                    dataset_type=row.dataset or row.task,
                    dataset_name=row.task,
                    dataset_config=row.dataset_config,
                    dataset_split=row.dataset_split,
                    dataset_args={"num_few_shot": shots},
                    metric_type=row.metric,
                    metric_value=row.value,
                    metric_name=f"{_PRETTY_METRICS.get(row.metric, row.metric)} ({shots}-shot)",
                    source_name="lm-evaluation-harness",
                    source_url="https://github.com/EleutherAI/lm-evaluation-harness",
                )
            )
        return results

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the rows (`downstream_results.json`) and lm-eval's raw JSON (`lm_eval_results.json`) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / RESULTS_FILENAME, self.to_dict())
        write_json(directory / RAW_RESULTS_FILENAME, self.raw)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> DownstreamResults:
        """Read what `save` wrote (the raw JSON is optional)."""
        directory = Path(directory)
        path = directory / RESULTS_FILENAME
        if not path.is_file():
            raise EvaluationError(f"No {RESULTS_FILENAME} in {directory}: run `inheritune evaluate` first.")
        data = json.loads(path.read_text())
        raw_path = directory / RAW_RESULTS_FILENAME
        raw = json.loads(raw_path.read_text()) if raw_path.is_file() else {}
        rows = [DownstreamResult(**row) for row in data["rows"]]
        return cls(rows=rows, raw=raw, chances=data.get("chance") or {})

    @classmethod
    def from_lm_eval(
        cls, raw: Mapping[str, Any], metrics: Mapping[str, Sequence[str] | None], keep_samples: bool = True
    ) -> DownstreamResults:
        """Flatten `simple_evaluate`'s output into rows; `metrics` maps each task to the metrics to keep (None: all).

        The chance level of each multiple-choice task comes from lm-eval's logged samples when `raw` has them;
        `keep_samples=False` then leaves them out of `.raw` (they hold every document and answer)."""
        results = raw.get("results", {})
        configs = raw.get("configs", {})
        higher = raw.get("higher_is_better", {})
        n_shot = raw.get("n-shot", {})
        n_samples = raw.get("n-samples", {})
        rows = []
        for task, wanted in metrics.items():
            if task not in results:
                raise EvaluationError(f"lm-eval returned no results for task {task!r}; got {sorted(results)}.")
            scores = results[task]
            available = _metrics_in(scores)
            if wanted is None:
                chosen = list(available)
            else:
                missing = [m for m in wanted if m not in available]
                if missing:
                    raise EvaluationError(f"Task {task!r} reported no {missing}; it reports {list(available)}.")
                chosen = list(wanted)
            config = configs.get(task, {})
            dataset = config.get("dataset_path")
            for metric in chosen:
                key = available[metric]
                stderr = scores.get(key.replace(",", "_stderr,", 1))
                rows.append(
                    DownstreamResult(
                        task=task,
                        metric=metric,
                        value=float(scores[key]),
                        stderr=float(stderr) if isinstance(stderr, int | float) else None,
                        higher_is_better=higher.get(task, {}).get(metric),
                        num_fewshot=n_shot.get(task),
                        num_samples=(n_samples.get(task) or {}).get("effective"),
                        dataset=None if dataset in _LOCAL_BUILDERS else dataset,
                        dataset_config=config.get("dataset_name"),
                        dataset_split=config.get("test_split") or config.get("validation_split"),
                    )
                )
        chances = {task: level for task, level in chance_levels(raw).items() if task in metrics}
        kept = {key: value for key, value in raw.items() if keep_samples or key != "samples"}
        return cls(rows=rows, raw=jsonable(kept), chances=chances)


def chance_levels(raw: Mapping[str, Any]) -> dict[str, float]:
    """The accuracy a uniform guess scores on each multiple-choice task of a `simple_evaluate(log_samples=True)`
    output: the mean over the documents scored of 1 / their number of choices (one loglikelihood request each).

    Measured rather than looked up, so any task (a local YAML, a benchmark with 2, 4 or a varying number of
    choices, a `--limit`ed run) gets its own level, and a group gets the size-weighted level of its subtasks.
    """
    configs, samples = raw.get("configs") or {}, raw.get("samples") or {}
    inverse: dict[str, list[float]] = {}
    for task, examples in samples.items():
        if (configs.get(task) or {}).get("output_type") == "multiple_choice":
            counts = [len(example.get("arguments") or ()) for example in examples]
            if counts and min(counts) >= 2:
                inverse[task] = [1.0 / count for count in counts]

    def leaves(name: str) -> list[str]:
        children = (raw.get("group_subtasks") or {}).get(name)
        return [leaf for child in children for leaf in leaves(child)] if children else [name]

    levels = {task: sum(values) / len(values) for task, values in inverse.items()}
    for group in raw.get("group_subtasks") or {}:
        members = leaves(group)
        if members and all(member in inverse for member in members):
            values = [value for member in members for value in inverse[member]]
            levels[group] = sum(values) / len(values)
    return levels


def evaluate_downstream(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    tasks: Tasks = PAPER_TASKS,
    *,
    num_fewshot: int = 0,
    batch_size: int | str = 16,
    limit: int | float | None = None,
    include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    include_defaults: bool | None = None,
    **simple_evaluate_kwargs: Any,
) -> DownstreamResults:
    """Score `model` on lm-eval tasks zero-shot (by default) without saving it, as the paper's Table 2 does.

    Args:
        model: the causal LM to score, as it is in memory (any device; it is put in eval mode and restored).
        tokenizer: its tokenizer.
        tasks: a mapping task -> metrics to report (default `PAPER_TASKS`); or a list of task names, YAML paths or
            task config dicts (all their metrics are reported); or one comma-separated string ("a,b,c").
        num_fewshot: few-shot examples per prompt; the paper uses 0.
        batch_size: lm-eval's batch size ("auto" lets lm-eval probe the largest that fits).
        limit: evaluate only the first `limit` documents of each task (a fraction if < 1): for smoke tests.
        include_path: folder(s) of local task YAMLs (e.g. a perplexity and a multiple-choice task on held-out text).
        include_defaults: index lm-eval's ~15k built-in tasks too. None (default) does so only when a task name is
            not found under `include_path`, because indexing them takes ~15 s.
        **simple_evaluate_kwargs: passed on to `lm_eval.simple_evaluate` (e.g. `bootstrap_iters`, `log_samples`).

    Every task name and metric is checked before the model runs: an unknown name raises `EvaluationError` listing
    the closest known names.
    """
    # The same limits as `inheritune evaluate`'s flags, before lm-eval is imported or a task indexed.
    check_arguments({"num_fewshot": num_fewshot, "limit": limit}, EvaluateArguments.RANGES)
    check_batch_size(batch_size, name="batch_size")
    lm_eval = _import_lm_eval()
    from lm_eval.models.huggingface import HFLM

    wanted = _normalize_tasks(tasks)
    manager = _resolve_tasks(wanted, include_path, include_defaults)
    specs = [spec for spec, _ in wanted]
    metrics = {_task_name(spec): chosen for spec, chosen in wanted}

    was_training = model.training
    model.eval()
    rng_state = _rng_state()
    try:
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        # The samples say how many choices each document had (its chance level); kept only when asked for.
        keep_samples = bool(simple_evaluate_kwargs.pop("log_samples", False))
        with no_download_counts(), _TruncationSummary(lm.max_length):  # local tasks load local JSONL: no network
            raw = lm_eval.simple_evaluate(
                model=lm,
                tasks=specs,
                num_fewshot=num_fewshot,
                limit=limit,
                task_manager=manager,
                log_samples=True,
                **simple_evaluate_kwargs,
            )
    finally:
        model.train(was_training)
        _restore_rng_state(rng_state)  # simple_evaluate seeds the global RNGs; a training script should not notice
    if raw is None:  # lm-eval returns None on non-zero ranks of a distributed run
        return DownstreamResults(rows=[], raw={})
    return DownstreamResults.from_lm_eval(raw, metrics, keep_samples=keep_samples)


class _TruncationSummary(logging.Filter):
    """Folds lm-eval's one warning per truncated request into one line at the end (a task of long documents on a
    small context otherwise prints thousands): how many requests were cut to the context, and by how much."""

    LOGGER = "lm_eval.models.huggingface"
    _CUT = re.compile(
        r"Truncating (\d+) tokens from the left|Original sequence length was (\d+), truncating to last (\d+)"
    )

    def __init__(self, context: int) -> None:
        super().__init__()
        self.context, self.count, self.most = context, 0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._CUT.search(record.getMessage())
        if match is None:
            return True
        self.count += 1
        cut = int(match[1]) if match[1] else int(match[2]) - int(match[3])
        self.most = max(self.most, cut)
        return False

    def __enter__(self) -> _TruncationSummary:
        logging.getLogger(self.LOGGER).addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(self.LOGGER).removeFilter(self)
        if self.count:
            logger.warning(
                "lm-eval cut %d request(s) longer than the model's context of %d tokens from the left (at most %d "
                "tokens each): their scores see only the last %d tokens.",
                self.count,
                self.context,
                self.most,
                self.context,
            )


def check_tasks(
    tasks: Tasks = PAPER_TASKS,
    *,
    include_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    include_defaults: bool | None = None,
) -> list[str]:
    """Check task names and metrics without a model, so a script fails before loading or training anything.

    Returns the task names in order. Raises `EvaluationError` for a missing lm-eval, an unknown task (listing the
    closest names) or a metric the task does not declare.
    """
    _import_lm_eval()
    wanted = _normalize_tasks(tasks)
    _resolve_tasks(wanted, include_path, include_defaults)
    return [_task_name(spec) for spec, _ in wanted]


def write_heldout_tasks(
    texts: Sequence[str],
    directory: str | os.PathLike,
    *,
    name: str = "heldout",
    num_choices: int = 4,
    max_words: int = 32,
    max_docs: int = 500,
    seed: int = 0,
) -> Path:
    """Write two offline lm-eval tasks built from held-out text: `<name>_ppl` and `<name>_mc` (YAML + JSONL).

    The paper's suite needs its datasets from the Hub; these need nothing, so a demo or a test can score a model
    offline on text it was not trained on:

    - `<name>_ppl` (`loglikelihood_rolling`): word and byte perplexity and bits per byte of each text;
    - `<name>_mc` (`multiple_choice`, acc / acc_norm): the first 60% of a text's first `max_words` words, and
      which of `num_choices` endings is its own; the others are endings of other texts, so chance is
      1/num_choices, and a model that learned the language beats it.

    `data_files` are absolute paths, so the folder works as `include_path` from any working directory.
    """
    import yaml

    at_least_two = Range(low=2, integer=True)  # two choices to tell apart; a context word and an ending word
    check_arguments(
        {"num_choices": num_choices, "max_words": max_words, "max_docs": max_docs, "seed": seed},
        {"num_choices": at_least_two, "max_words": at_least_two, "max_docs": POSITIVE_INT, "seed": SEED},
    )
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise EvaluationError(f"Task name prefix {name!r} must be letters, digits and '_'.")
    docs = [" ".join(text.split()) for text in texts if text and text.strip()][:max_docs]
    rng = random.Random(seed)
    splits = []
    for doc in docs:
        words = doc.split()[:max_words]
        if len(words) >= 2:
            cut = max(1, int(len(words) * 0.6))
            splits.append((" ".join(words[:cut]), " ".join(words[cut:])))
    mc_docs = []
    for query, ending in splits:
        others = sorted({other for _, other in splits if other != ending})
        if len(others) < num_choices - 1:
            continue
        choices = rng.sample(others, num_choices - 1)
        gold = rng.randrange(num_choices)
        choices.insert(gold, ending)
        mc_docs.append({"query": query, "choices": choices, "gold": gold})
    if not docs or not mc_docs:
        raise EvaluationError(
            f"Need texts with at least 2 words and {num_choices} different endings to build the tasks; "
            f"got {len(docs)} texts and {len(splits)} usable ones."
        )

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    common = {"dataset_path": "json", "test_split": "test", "metadata": {"version": 1.0}}
    tasks = {
        f"{name}_ppl": (
            [{"text": doc} for doc in docs],
            {
                "output_type": "loglikelihood_rolling",
                "doc_to_text": "",
                "doc_to_target": "{{text}}",
                "metric_list": [
                    {"metric": "word_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                    {"metric": "byte_perplexity", "aggregation": "weighted_perplexity", "higher_is_better": False},
                    {"metric": "bits_per_byte", "aggregation": "bits_per_byte", "higher_is_better": False},
                ],
            },
        ),
        f"{name}_mc": (
            mc_docs,
            {
                "output_type": "multiple_choice",
                "doc_to_text": "{{query}}",
                "doc_to_choice": "{{choices}}",
                "doc_to_target": "{{gold}}",
                "metric_list": [
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            },
        ),
    }
    for task, (rows, config) in tasks.items():
        data_file = directory / f"{task}.jsonl"
        atomic_write_text(data_file, "".join(json.dumps(row) + "\n" for row in rows))
        spec = {"task": task, **common, "dataset_kwargs": {"data_files": {"test": str(data_file)}}, **config}
        atomic_write_text(directory / f"{task}.yaml", yaml.safe_dump(spec, sort_keys=False))
    return directory


# ---------------------------------------------------------------------------------------------- task resolution


def _import_lm_eval() -> Any:
    try:
        import lm_eval
        import lm_eval.models.huggingface  # noqa: F401
    except ImportError as err:
        raise EvaluationError(
            f"Downstream evaluation needs lm-evaluation-harness, which is not installed ({err}). Install it with: "
            f"{_PIP_HINT}"
        ) from err
    return lm_eval


def _normalize_tasks(tasks: Tasks) -> list[tuple[TaskSpec, tuple[str, ...] | None]]:
    """(task spec, metrics to keep or None for all) pairs, in the order given."""
    if isinstance(tasks, str):
        tasks = [name.strip() for name in tasks.split(",") if name.strip()]
    if isinstance(tasks, Mapping) and "task" not in tasks:
        pairs = [(name, None if chosen is None else tuple(chosen)) for name, chosen in tasks.items()]
    elif isinstance(tasks, Mapping):
        pairs = [(tasks, None)]
    else:
        pairs = [(spec, None) for spec in tasks]
    if not pairs:
        raise EvaluationError("No tasks given: pass task names (e.g. PAPER_TASKS), YAML paths or task config dicts.")
    for spec, _ in pairs:
        if isinstance(spec, Mapping) and not isinstance(spec.get("task"), str):
            raise EvaluationError(f"A task config dict needs a 'task' name; got keys {sorted(spec)}.")
        if not isinstance(spec, str | Mapping):
            raise EvaluationError(f"A task is a name, a YAML path or a config dict; got {type(spec).__name__}.")
    names = [_task_name(spec) for spec, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise EvaluationError(f"Tasks asked for more than once: {duplicates}.")
    return pairs


def _task_name(spec: TaskSpec) -> str:
    if isinstance(spec, Mapping):
        return spec["task"]
    if spec.endswith((".yaml", ".yml")) and Path(spec).is_file():
        # a regex, not yaml.safe_load: lm-eval YAMLs may hold `!function` tags that a plain loader rejects
        found = re.search(r"^task:\s*['\"]?([^'\"\s#]+)", Path(spec).read_text(), re.MULTILINE)
        return found.group(1) if found else Path(spec).stem
    return spec


def _resolve_tasks(
    wanted: list[tuple[TaskSpec, tuple[str, ...] | None]],
    include_path: str | os.PathLike | Sequence[str | os.PathLike] | None,
    include_defaults: bool | None,
) -> Any:
    """Check every task and metric before any work, and return the `TaskManager` that will load them."""
    paths = _include_paths(include_path)
    names = [spec for spec, _ in wanted if isinstance(spec, str) and not Path(spec).is_file()]
    local = _task_manager(paths, False)
    if include_defaults is None:
        include_defaults = any(name not in local.task_index for name in names)
    manager = _task_manager(paths, True) if include_defaults else local

    unknown = [name for name in names if name not in manager.task_index]
    if unknown:
        lines = []
        for name in unknown:
            close = difflib.get_close_matches(name, manager.all_tasks, n=5, cutoff=0.6)
            lines.append(f"  {name!r}: did you mean {', '.join(close)}?" if close else f"  {name!r}: no close match")
        where = "lm-eval's built-in tasks" if include_defaults else "the local tasks"
        where += f" and {', '.join(map(str, paths))}" if paths and include_defaults else ""
        raise EvaluationError(
            "Unknown lm-eval task(s), not found in " + where + ":\n" + "\n".join(lines) + "\n"
            "Pass a local task folder with --include_path (library: include_path=...) or a YAML path / config dict."
        )

    for spec, chosen in wanted:
        if chosen is None:
            continue
        if isinstance(spec, Mapping):
            config: Mapping[str, Any] | None = spec
        elif spec in manager.task_index:
            config = manager.task_index[spec].cfg
        else:
            config = None
        declared = [m["metric"] for m in (config or {}).get("metric_list", []) if isinstance(m, Mapping)]
        missing = [metric for metric in chosen if declared and metric not in declared]
        if missing:
            raise EvaluationError(
                f"Task {_task_name(spec)!r} has no metric(s) {missing}; it declares {declared}. "
                "Pass None as its metrics to keep them all."
            )
    return manager


def _include_paths(include_path: str | os.PathLike | Sequence[str | os.PathLike] | None) -> tuple[str, ...]:
    if include_path is None:
        return ()
    items = [include_path] if isinstance(include_path, str | os.PathLike) else list(include_path)
    paths = tuple(str(Path(p).absolute()) for p in items)
    for path in paths:
        if not Path(path).is_dir():
            raise EvaluationError(f"include_path {path} is not a folder of lm-eval task YAML files.")
    return paths


@functools.lru_cache(maxsize=8)
def _task_manager(paths: tuple[str, ...], include_defaults: bool) -> Any:
    """One `TaskManager` per (paths, defaults): indexing lm-eval's built-in tasks costs ~15 s, so do it once."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(paths) or None, include_defaults=include_defaults)


def _rng_state() -> tuple[Any, Any, Any, Any]:
    import numpy as np
    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _restore_rng_state(state: tuple[Any, Any, Any, Any]) -> None:
    import numpy as np
    import torch

    python, numpy_state, torch_state, cuda = state
    random.setstate(python)
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch_state)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------------------------------- formatting


def _metrics_in(scores: Mapping[str, Any]) -> dict[str, str]:
    """metric name -> its key in lm-eval's per-task dict ("acc,none"), skipping stderrs and bookkeeping."""
    found: dict[str, str] = {}
    for key, value in scores.items():
        if "," not in key or "_stderr," in key or not isinstance(value, int | float) or isinstance(value, bool):
            continue
        metric, filter_name = key.split(",", 1)
        if metric not in found or filter_name == "none":
            found[metric] = key
    return found


def _format_value(row: DownstreamResult, value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if row.higher_is_better and 0.0 <= row.value <= 1.0:
        return f"{100 * value:.2f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"
