"""inheritune_hf.io: every write is atomic (the old file or the new one, never half, no temporary left behind),
and JSON is converted one way."""

import ast
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import inheritune_hf
from inheritune_hf import io
from inheritune_hf.analyze import AttentionReport
from inheritune_hf.evaluate import RAW_RESULTS_FILENAME, RESULTS_FILENAME, DownstreamResult, DownstreamResults
from inheritune_hf.figures import plot_attention
from inheritune_hf.fingerprint import settings_differences


class DiskFull(OSError):
    pass


def break_writes(monkeypatch) -> None:
    """Make `Path.write_text` / `write_bytes` write the first half of their data, then fail (a full disk, a kill)."""

    def text(self, data, *args, **kwargs):
        with open(self, "w") as handle:
            handle.write(data[: len(data) // 2])
        raise DiskFull("no space left on device")

    def raw(self, data):
        with open(self, "wb") as handle:
            handle.write(data[: len(data) // 2])
        raise DiskFull("no space left on device")

    monkeypatch.setattr(Path, "write_text", text)
    monkeypatch.setattr(Path, "write_bytes", raw)


@pytest.fixture
def half_writes(monkeypatch):
    break_writes(monkeypatch)


def names(folder: Path) -> list[str]:
    """Every entry in `folder`, hidden temporaries included."""
    return sorted(path.name for path in folder.iterdir())


# ---------------------------------------------------------------------------------------------- files


def test_atomic_write_text_replaces_the_file(tmp_path):
    path = tmp_path / "notes.md"
    path.write_text("old\n")
    assert io.atomic_write_text(path, "new\n") == path
    assert path.read_text() == "new\n"
    assert names(tmp_path) == ["notes.md"]


def test_atomic_write_text_failing_mid_write_keeps_the_old_file_and_no_temporary(tmp_path, half_writes):
    path = tmp_path / "notes.md"
    with open(path, "w") as handle:
        handle.write("old\n")
    with pytest.raises(DiskFull):
        io.atomic_write_text(path, "a much longer new text\n")
    assert path.read_text() == "old\n"
    assert names(tmp_path) == ["notes.md"]


def test_atomic_write_bytes_failing_mid_write_creates_nothing(tmp_path, half_writes):
    with pytest.raises(DiskFull):
        io.atomic_write_bytes(tmp_path / "blob.bin", b"0123456789")
    assert names(tmp_path) == []


def test_atomic_path_keeps_the_suffix_and_removes_the_temporary_on_error(tmp_path):
    path = tmp_path / "figure.png"
    with pytest.raises(RuntimeError), io.atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"half a png")
        raise RuntimeError("savefig failed")
    assert names(tmp_path) == []


def test_a_suffixless_path_gets_a_suffixless_temporary(tmp_path):
    with io.atomic_path(tmp_path / "README") as tmp:
        assert tmp.suffix == ""  # a writer that picks its format from the name must not see ".tmp"
        tmp.write_text("x")
    assert names(tmp_path) == ["README"]


# ---------------------------------------------------------------------------------------------- JSON

VALUE = {
    "path": Path("runs") / "a",
    "f64": np.float64(0.25),
    "i64": np.int64(3),
    "f32": np.float32(0.5),
    "tensor": torch.tensor(2.0),
    "pair": (1, 2),
    7: "int key",
    "nan": float("nan"),
}


def test_jsonable_is_the_default_str_conversion():
    converted = io.jsonable(VALUE)
    assert {k: v for k, v in converted.items() if k != "nan"} == {
        "path": str(Path("runs") / "a"),
        "f64": 0.25,  # a float subclass: stays a number
        "i64": "3",  # numpy integers are not int subclasses: their str, as rounds._jsonable did
        "f32": "0.5",
        "tensor": "tensor(2.)",
        "pair": [1, 2],
        "7": "int key",
    }
    assert str(converted["nan"]) == "nan"
    assert json.dumps(converted, sort_keys=True) == json.dumps(
        json.loads(json.dumps(VALUE, default=str)), sort_keys=True
    )


def test_write_json_writes_what_rounds_wrote_and_reads_back(tmp_path):
    path = io.write_json(tmp_path / "run.json", VALUE)
    assert path.read_text() == json.dumps(json.loads(json.dumps(VALUE, default=str)), indent=2) + "\n"
    assert json.dumps(io.read_json(path)) == json.dumps(io.jsonable(VALUE))


def test_write_json_with_a_failing_value_keeps_the_old_file(tmp_path):
    class Unprintable:
        def __str__(self):
            raise RuntimeError("cannot print")

    path = tmp_path / "rounds.json"
    io.write_json(path, [{"round": 1}])
    with pytest.raises(RuntimeError):
        io.write_json(path, [{"round": 1}, {"round": 2, "model": Unprintable()}])
    assert io.read_json(path) == [{"round": 1}]
    assert names(tmp_path) == ["rounds.json"]


def test_write_json_failing_mid_write_keeps_the_old_file(tmp_path, half_writes):
    path = tmp_path / "rounds.json"
    with open(path, "w") as handle:
        handle.write('[{"round": 1}]\n')
    with pytest.raises(DiskFull):
        io.write_json(path, [{"round": 1}, {"round": 2}])
    assert io.read_json(path) == [{"round": 1}]
    assert names(tmp_path) == ["rounds.json"]


# ---------------------------------------------------------------------------------------------- folders


def test_atomic_output_dir_failing_keeps_the_old_folder_and_no_temporary(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("old")
    with pytest.raises(RuntimeError), io.atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "model.safetensors").write_text("half")
        raise RuntimeError("killed")
    assert names(tmp_path) == ["out"]
    assert (out / "model.safetensors").read_text() == "old"


def test_atomic_output_dir_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.bin").write_text("old")
    with io.atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "model.safetensors").write_text("new")
    assert names(tmp_path) == ["out"]
    assert names(out) == ["model.safetensors"]


def test_io_imports_only_the_standard_library_and_errors():
    tree = ast.parse(Path(io.__file__).read_text())
    local = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
    assert local == {"errors"}
    absolute = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    absolute |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level
    }
    assert absolute <= {
        "__future__",
        "collections",
        "contextlib",
        "json",
        "os",
        "pathlib",
        "secrets",
        "shutil",
        "tempfile",
        "typing",
    }


# ---------------------------------------------------------------------------------------------- the writers


def report() -> AttentionReport:
    return AttentionReport(
        rank=[[1.0, 2.0], [1.0, 1.0]],
        mass=[[1.0, 2.0], [1.0, 1.0]],
        layers=[0, 1],
        layer_names=["h.0.attn", "h.1.attn"],
        num_layers=2,
        model_name="tiny",
        settings={"tau": 0.9},
    )


def test_attention_report_to_json_failing_keeps_the_previous_report(tmp_path, monkeypatch):
    path = tmp_path / "report.json"
    previous = report().to_json(path)
    bigger = report()
    bigger.model_name = "a different model"
    break_writes(monkeypatch)
    with pytest.raises(DiskFull):
        bigger.to_json(path)
    assert path.read_text() == previous + "\n"
    assert names(tmp_path) == ["report.json"]


def test_attention_report_to_csv_failing_keeps_the_previous_table(tmp_path, monkeypatch):
    path = tmp_path / "report.csv"
    report().to_csv(path)
    previous = path.read_text()

    def fail(self, rows):
        raise DiskFull("no space left on device")

    monkeypatch.setattr(csv.DictWriter, "writerows", fail)
    with pytest.raises(DiskFull):
        report().to_csv(path)  # the header was already written to the temporary
    assert path.read_text() == previous
    assert names(tmp_path) == ["report.csv"]


def test_attention_report_plot_failing_keeps_the_previous_figure(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    path = tmp_path / "attention_rank.png"
    assert plot_attention(report(), path) == path
    previous = path.read_bytes()
    assert previous.startswith(b"\x89PNG")

    def fail(self, fname, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(b"\x89PNG half")
        raise DiskFull("no space left on device")

    monkeypatch.setattr(Figure, "savefig", fail)
    with pytest.raises(DiskFull):
        plot_attention(report(), path)
    assert path.read_bytes() == previous
    assert names(tmp_path) == ["attention_rank.png"]


def test_attention_report_plot_returns_the_file_savefig_writes(tmp_path):
    pytest.importorskip("matplotlib")
    written = plot_attention(report(), tmp_path / "figure")
    assert written == tmp_path / "figure.png"  # matplotlib's default format, as before
    assert names(tmp_path) == ["figure.png"]


def results(value: float) -> DownstreamResults:
    return DownstreamResults(
        rows=[DownstreamResult("arc_easy", "acc", value, 0.01, True, 0, 100)],
        raw={"results": {"arc_easy": {"acc,none": np.float64(value)}}, "config": {"model": Path("m")}},
    )


def test_downstream_results_save_failing_keeps_the_previous_results(tmp_path, monkeypatch):
    results(0.5).save(tmp_path)
    before = {name: (tmp_path / name).read_text() for name in (RESULTS_FILENAME, RAW_RESULTS_FILENAME)}
    break_writes(monkeypatch)
    with pytest.raises(DiskFull):
        results(0.75).save(tmp_path)
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert names(tmp_path) == sorted(before)
    assert DownstreamResults.load(tmp_path).rows[0].value == 0.5


def test_downstream_results_save_writes_the_json_push_uploads(tmp_path):
    from inheritune_hf.io import json_text

    saved = results(0.5)
    saved.save(tmp_path)
    assert (tmp_path / RESULTS_FILENAME).read_text() == json.dumps(saved.to_dict(), indent=2) + "\n"
    assert (tmp_path / RAW_RESULTS_FILENAME).read_text() == json_text(saved.raw)


# ---------------------------------------------------------------------------------------------- fingerprints


def test_settings_differences_name_every_changed_leaf():
    old = {"training": {"learning_rate": 3e-4, "seed": 1}, "layers": 12}
    new = {"training": {"learning_rate": 1e-4, "seed": 1}, "layers": 12, "extra": True}
    assert settings_differences(old, new) == ["extra: None -> True", "training.learning_rate: 0.0003 -> 0.0001"]


def test_fingerprints_stay_importable_from_rounds():
    from inheritune_hf import fingerprint, rounds

    assert rounds.config_fingerprint is fingerprint.config_fingerprint
    assert rounds.model_fingerprint is fingerprint.model_fingerprint
    assert rounds.dataset_fingerprint is fingerprint.dataset_fingerprint
    assert inheritune_hf.recipe  # recipe imports without rounds' private names
