"""Issue 15's search: settings of the embedded-corpus demo under which the reference's attention collapses.

    python scripts/collapse_search.py train --run NAME [--track_every 100] [--max_minutes 10] [DEMO FLAGS ...]
    python scripts/collapse_search.py table docs/collapse/*.json
    python scripts/collapse_search.py plot docs/collapse/RUN.json [--out docs/collapse/max_rank_over_steps.png]

`train` reads `recipes/tiny.yaml` exactly as the demo does (`parse_recipe_args`: the YAML, `--budget`, then any
flag such as `--num_layers 12 --learning_rate 3e-3 --start_blocks_with_bos true`), builds the demo's tokenizer and
blocks (`prepare_inputs`) and its reference config (`reference_config`), and trains the reference with
`inheritune_hf.train.train`. Every `--track_every` steps a small `TrainerCallback` runs `analyze_attention` on fixed
samples (the first `analyze_samples` validation blocks, cut to `analyze_seq_len` tokens, so with BOS they start with
BOS, as the training windows do) and writes the curves to `docs/collapse/<run>.json` after every probe, so a run
cut short by `--max_minutes` keeps what it measured. The probe stands in for `AttentionCollapseCallback`.

What each probe keeps, per layer: MaxRank, AvgMass, and every head's mean rank and mass; overall: the lazy layers
(MaxRank < 1.5), the share of heads whose mean rank rounds to 1, and the share whose mean mass m* rounds to 1 (one
column holds 90 % of the squared attention: a sink).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "collapse"
LAZY = 1.5  # "rounds to 1": ranks and masses are >= 1


def one_column_fraction(report: Any) -> float:
    """Share of all heads whose mean mass m* rounds to 1: one column holds `eta` of the attention (a sink)."""
    heads = [value for layer in report.mass for value in layer]
    return sum(value < LAZY for value in heads) / len(heads)


def first_token_attention(model: Any, samples: Any) -> list[float]:
    """Per layer, the mean attention weight that queries 1..T-1 give position 0 (Gu et al.'s sink score, before
    any threshold): a sink forming shows here long before one column holds 90 % of a head's squared attention."""
    import torch

    implementation = model.config._attn_implementation
    was_training = model.training
    model.eval()
    try:
        model.set_attn_implementation("eager")  # transformers 5 returns attention weights from eager only
        with torch.inference_mode():
            attentions = model(input_ids=samples, output_attentions=True, use_cache=False).attentions
    finally:
        model.set_attn_implementation(implementation)
        model.train(was_training)
    return [float(layer[:, :, 1:, 0].mean()) for layer in attentions]


def probe_record(step: int, report: Any, seconds: float, first_token: list[float]) -> dict[str, Any]:
    """One point of the curves: the paper's per-layer summaries and the head-level shares."""
    return {
        "first_token_attention": first_token,
        "step": step,
        "max_rank": report.max_rank,
        "avg_mass": report.avg_mass,
        "lazy_layers": report.lazy_layers,
        "rank_one_heads": report.rank_one_fraction,
        "one_column_heads": one_column_fraction(report),
        "head_rank": report.rank,
        "head_mass": report.mass,
        "seconds": seconds,
    }


def make_probe(samples: Any, every: int, record: dict[str, Any], path: Path, max_seconds: float | None) -> Any:
    """A `TrainerCallback` that measures attention every `every` steps (and at step 0 and the last step), writes
    the record after each probe, and stops training once `max_seconds` of wall time have passed."""
    import torch
    from transformers import TrainerCallback

    from inheritune_hf import analyze_attention
    from inheritune_hf.io import write_json

    class AttentionProbe(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.monotonic()
            self.probe_seconds = 0.0
            self.last_step = -1

        def probe(self, model: Any, step: int) -> None:
            if step == self.last_step:
                return
            began = time.monotonic()
            report = analyze_attention(
                model,
                input_ids=samples,
                num_samples=samples.shape[0],
                seq_len=samples.shape[1],
                batch_size=25,
                progress=False,
            )
            first_token = first_token_attention(model, samples)
            seconds = time.monotonic() - began
            self.probe_seconds += seconds
            self.last_step = step
            record["probes"].append(probe_record(step, report, seconds, first_token))
            record["probe_seconds"] = self.probe_seconds
            record["elapsed_seconds"] = time.monotonic() - self.start
            write_json(path, record)
            point = record["probes"][-1]
            print(
                f"[probe] step {step}: MaxRank {min(point['max_rank']):.2f}..{max(point['max_rank']):.2f}, "
                f"AvgMass {min(point['avg_mass']):.2f}..{max(point['avg_mass']):.2f}, lazy {point['lazy_layers']}, "
                f"rank-1 heads {point['rank_one_heads']:.0%}, one-column heads {point['one_column_heads']:.0%}, "
                f"attention on position 0 {min(first_token):.2f}..{max(first_token):.2f} ({seconds:.1f} s)",
                flush=True,
            )

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            self.start = time.monotonic()
            with torch.no_grad():
                self.probe(model, 0)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if state.global_step % every == 0:
                self.probe(model, state.global_step)
            if max_seconds is not None and time.monotonic() - self.start - self.probe_seconds > max_seconds:
                record["stopped_by_time_limit"] = True
                control.should_training_stop = True
            return control

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if metrics and "eval_loss" in metrics:
                record["eval_curve"].append({"step": state.global_step, "eval_loss": float(metrics["eval_loss"])})

        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.probe(model, state.global_step)

    return AttentionProbe()


def settings_of(recipe: Any, data_args: Any, training_args: Any) -> dict[str, Any]:
    """The demo keys that shape the reference, as `recipes/tiny.yaml` spells them."""
    keys = [
        (recipe, ("num_layers", "hidden_size", "num_attention_heads", "tokenizer_vocab_size", "config_overrides")),
        (data_args, ("block_size", "corpus_max_bytes", "start_blocks_with_bos")),
        (
            training_args,
            (
                "learning_rate",
                "weight_decay",
                "warmup_steps",
                "max_steps",
                "per_device_train_batch_size",
                "lr_scheduler_type",
                "lr_scheduler_kwargs",
                "adam_beta1",
                "adam_beta2",
                "max_grad_norm",
                "seed",
            ),
        ),
    ]
    return {key: getattr(obj, key) for obj, names in keys for key in names}


def run_train(argv: list[str]) -> int:
    """Train one reference with the demo's pieces and its settings plus `argv`'s flags, probing its attention."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--run", required=True, help="Name of the run: docs/collapse/<run>.json.")
    pre.add_argument("--track_every", type=int, default=100, help="Steps between attention probes.")
    pre.add_argument("--max_minutes", type=float, default=None, help="Stop training after this much wall time.")
    pre.add_argument("--threads", type=int, default=2, help="torch threads (the machine has 2 shared cores).")
    pre.add_argument("--out_dir", type=Path, default=DOCS, help="Where the run's JSON goes.")
    known, rest = pre.parse_known_args(argv)
    if known.track_every < 1:
        print("error: --track_every must be a positive number of steps.", file=sys.stderr)
        return 2
    known.out_dir.mkdir(parents=True, exist_ok=True)
    path = known.out_dir / f"{known.run}.json"

    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from inheritune_hf.recipe.plan import parameter_count, reference_config
    from inheritune_hf.recipe.run import parse_recipe_args
    from inheritune_hf.recipe.stages import prepare_inputs
    from inheritune_hf.train import train

    torch.set_num_threads(known.threads)
    flags = ["--output_dir", str(ROOT / "outputs" / "collapse" / known.run), "--save_strategy", "no", *rest]
    recipe, inheritune_args, data_args, training_args = parse_recipe_args(flags, ROOT / "recipes" / "tiny.yaml")

    began = time.monotonic()
    inputs = prepare_inputs(recipe, data_args)
    eval_set = inputs.eval_set
    if inheritune_args.max_eval_blocks is not None:  # the rounds' eval budget, here for the reference too
        eval_set = eval_set.select(range(min(inheritune_args.max_eval_blocks, len(eval_set))))
    seq_len = min(recipe.analyze_seq_len, data_args.block_size)
    samples = inputs.eval_set[: recipe.analyze_samples]["input_ids"][:, :seq_len]
    setup_seconds = time.monotonic() - began

    set_seed(training_args.seed)
    config = reference_config(recipe, inputs.tokenizer, data_args.block_size)
    model = AutoModelForCausalLM.from_config(config)
    record: dict[str, Any] = {
        "run": known.run,
        "settings": settings_of(recipe, data_args, training_args),
        "flags": rest,
        "parameters": parameter_count(model),
        "tied_embeddings": model.get_input_embeddings().weight is model.get_output_embeddings().weight,
        "analysis": {
            "samples": int(samples.shape[0]),
            "seq_len": seq_len,
            "bos_first": bool(data_args.start_blocks_with_bos),
        },
        "eval_blocks": len(eval_set),
        "track_every": known.track_every,
        "threads": known.threads,
        "setup_seconds": setup_seconds,
        "load_at_start": os.getloadavg(),
        "probes": [],
        "eval_curve": [],
    }
    if data_args.start_blocks_with_bos:
        assert bool((samples[:, 0] == inputs.tokenizer.bos_token_id).all()), "analysis samples must start with BOS"
    max_seconds = None if known.max_minutes is None else 60 * known.max_minutes
    probe = make_probe(samples, known.track_every, record, path, max_seconds)
    print(f"[run] {known.run}: {record['parameters'] / 1e6:.2f}M parameters, {len(inputs.train_set)} train blocks")
    began, cpu_began = time.monotonic(), time.process_time()
    result = train(model, inputs.train_set, eval_set, training_args, tokenizer=inputs.tokenizer, callbacks=[probe])
    record["wall_seconds"] = time.monotonic() - began
    # The machine's cores are shared: CPU time over the threads is what the run would take on 2 idle cores.
    record["cpu_seconds"] = time.process_time() - cpu_began
    record["train_seconds"] = record["wall_seconds"] - record["probe_seconds"]
    record["steps"] = result.steps
    record["tokens"] = result.tokens
    record["final_loss"] = result.final_loss
    record["eval_curve"] = result.eval_curve
    record["load_at_end"] = os.getloadavg()
    result.trainer.save_model(str(ROOT / "outputs" / "collapse" / known.run / "model"))  # for later looks
    from inheritune_hf.io import write_json

    write_json(path, record)
    last = record["probes"][-1]
    print(
        f"[done] {known.run}: {result.steps} steps in {record['wall_seconds'] / 60:.1f} min "
        f"({record['probe_seconds']:.0f} s probing), val loss {result.final_loss:.3f}, "
        f"min MaxRank {min(last['max_rank']):.2f}, lazy {last['lazy_layers']}, rank-1 heads "
        f"{last['rank_one_heads']:.0%}, one-column heads {last['one_column_heads']:.0%} -> {path}"
    )
    return 0


def _short(key: str, value: Any) -> str:
    if key == "config_overrides":
        inverse = "scale_attn_by_inverse_layer_idx=true" in (value or "")
        return f"1/layer logit scale {'on' if inverse else 'off'}"
    return f"{key} {value}"


def settings_change(run: dict[str, Any], first: dict[str, Any] | None) -> str:
    """What a run changed against the first run of the table (the first run: its shape and optimiser)."""
    settings = run["settings"]
    if first is None:
        keys = ["num_layers", "hidden_size", "num_attention_heads", "block_size", "per_device_train_batch_size"]
        keys += ["learning_rate", "weight_decay", "tokenizer_vocab_size", "start_blocks_with_bos", "config_overrides"]
    else:
        keys = [key for key, value in settings.items() if first["settings"].get(key) != value and key != "max_steps"]
        if run.get("tied_embeddings") != first.get("tied_embeddings"):
            keys.append("tied")
    parts = [_short(key, run.get("tied_embeddings") if key == "tied" else settings[key]) for key in keys]
    return ", ".join(parts) or "same as the first row"


def lowest_head(values: list[list[float]]) -> float:
    return min(value for layer in values for value in layer)


def table(paths: list[Path]) -> str:
    """The search as a markdown table, one row per run (settings as changes against the first row)."""
    rows = [
        "| run | settings (against the first row) | steps | minutes: wall / CPU | val loss | min MaxRank (layer) | "
        "lazy layers | rank-1 heads | one-column heads | lowest head rank / mass | attention on position 0 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = [json.loads(path.read_text()) for path in paths]
    unfinished = [run["run"] for run in runs if "steps" not in run]
    if unfinished:
        print(f"left out, still training or cut off: {', '.join(unfinished)}", file=sys.stderr)
    runs = [run for run in runs if "steps" in run]
    for index, run in enumerate(runs):
        last = run["probes"][-1]
        ranks = last["max_rank"]
        low = min(range(len(ranks)), key=ranks.__getitem__)
        sink = last.get("first_token_attention")
        sink_text = f"{max(sink):.2f} (layer {sink.index(max(sink))})" if sink else "not measured"
        rows.append(
            f"| {run['run']} | {settings_change(run, runs[0] if index else None)} | {run['steps']} | "
            f"{run['wall_seconds'] / 60:.1f} / {run['cpu_seconds'] / 60:.1f} | {run['final_loss']:.3f} | "
            f"{ranks[low]:.2f} ({low}) | {last['lazy_layers'] or 'none'} | {last['rank_one_heads']:.0%} | "
            f"{last['one_column_heads']:.0%} | {lowest_head(last['head_rank']):.1f} / "
            f"{lowest_head(last['head_mass']):.1f} | {sink_text} |"
        )
    return "\n".join(rows)


def plot(path: Path, out: Path) -> Path:
    """MaxRank per layer against training steps (one line per layer, deeper = lighter) with the lazy line and the
    lowest single head; below, the head-level shares and the attention that position 0 receives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    from inheritune_hf.io import atomic_path

    run = json.loads(path.read_text())
    probes = run["probes"]
    steps = [p["step"] for p in probes]
    layers = len(probes[0]["max_rank"])
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8.5, 7.5), sharex=True, gridspec_kw={"height_ratios": [2.2, 1]}, constrained_layout=True
    )
    colors = plt.get_cmap("viridis")
    for layer in range(layers):
        values = [p["max_rank"][layer] for p in probes]
        top.plot(steps, values, color=colors(layer / max(1, layers - 1)), lw=1.4, label=f"layer {layer}")
    top.plot(steps, [lowest_head(p["head_rank"]) for p in probes], "k:", lw=1.6, label="lowest single head")
    top.axhline(LAZY, color="crimson", ls="--", lw=1)
    top.text(steps[0], LAZY, " lazy: MaxRank below 1.5", color="crimson", ha="left", va="bottom", fontsize=9)
    top.set_yscale("log")
    top.set_ylim(1, max(12, max(max(p["max_rank"]) for p in probes) * 1.15))
    top.yaxis.set_major_locator(FixedLocator([1, 1.5, 2, 3, 5, 8, 12, 20]))
    top.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    top.yaxis.set_minor_formatter(NullFormatter())
    top.set_ylabel("MaxRank (max over heads of mean k*)")
    settings = run["settings"]
    top.set_title(
        f"{run['run']}: attention MaxRank per layer during training\n"
        f"{settings['num_layers']} layers x {settings['hidden_size']} wide, T = {settings['block_size']}, lr "
        f"{settings['learning_rate']:g}, weight decay {settings['weight_decay']:g}\nprobed on "
        f"{run['analysis']['samples']} validation windows{' starting with BOS' if run['analysis']['bos_first'] else ''}",
        fontsize=10,
    )
    top.legend(ncol=2 if layers > 8 else 1, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    top.grid(alpha=0.3, which="major")
    bottom.plot(steps, [100 * p["rank_one_heads"] for p in probes], "o-", ms=3, label="heads with rank ~1")
    bottom.plot(steps, [100 * p["one_column_heads"] for p in probes], "s-", ms=3, label="heads with one-column mass")
    if all("first_token_attention" in p for p in probes):
        sink = [100 * max(p["first_token_attention"]) for p in probes]
        bottom.plot(
            steps,
            sink,
            "^-",
            ms=3,
            color="gray",
            label="attention on position 0\n(mean over a layer's heads,\nhighest layer)",
        )
    bottom.set_ylabel("% of heads / of attention")
    bottom.set_xlabel("training step")
    bottom.set_ylim(0, 100)
    bottom.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    bottom.grid(alpha=0.3)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in {"train", "table", "plot"}:
        print("usage: collapse_search.py {train,table,plot} ... (see the module docstring)", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        return run_train(rest)
    parser = argparse.ArgumentParser(prog=f"collapse_search.py {command}")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=DOCS / "max_rank_over_steps.png")
    args = parser.parse_args(rest)
    missing = [str(p) for p in args.runs if not p.is_file()]
    if missing:
        print(f"error: no such run file: {', '.join(missing)}; train it first.", file=sys.stderr)
        return 2
    if command == "table":
        print(table(args.runs))
    else:
        print(plot(args.runs[0], args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
