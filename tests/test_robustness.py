"""Hostile but realistic input: every bad value, file and folder gets a one-line error that names
it and a non-zero exit (no traceback), or a warning where it is legal; nothing a user made is
lost. The table of cases is what ``docs/robustness.md`` lists."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from expected_warnings import AT_CHANCE

from neurosculpt import runs
from neurosculpt.cli import main
from neurosculpt.validation import NeurosculptWarning, UserError, lock_run_folder

nir = pytest.importorskip("nir")
h5py = pytest.importorskip("h5py")

TINY = ["-b", "split-digits", "-m", "ann-mlp", "--epochs", "1", "--batch-size", "64",
        "--samples-per-task", "64", "--test-samples-per-task", "30",
        "--model-param", "hidden=16", "--threads", "1", "--quiet"]
TINY_SNN = [*TINY[:2], "-m", "snn-mlp", *TINY[4:], "--tasks", "2"]


# --- generated files ---------------------------------------------------------------------------


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape) + array.astype("u1").tobytes()


def _idx_folder(folder: Path, labels: np.ndarray | None = None,
                images_header: Callable[[bytes], bytes] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    images = np.zeros((20, 28, 28), dtype="u1")
    labels = np.arange(20) % 10 if labels is None else labels
    for name, array in (("train-images-idx3-ubyte", images), ("t10k-images-idx3-ubyte", images),
                        ("train-labels-idx1-ubyte", labels), ("t10k-labels-idx1-ubyte", labels)):
        data = _idx(array)
        if images_header and name.startswith("train-images"):
            data = images_header(data)
        (folder / name).write_bytes(data)
    return folder


def _wav(path: Path, frames: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(frames, dtype="<i2").tobytes())


def _fsdd_folder(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for digit in range(10):
        for index in range(7):
            _wav(folder / f"{digit}_alice_{index}.wav", 400)
    return folder


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished two-task snn-mlp run folder; cases copy it before breaking it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(["run", *TINY_SNN, "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def nir_file(finished_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("nir") / "model.nir"
    assert main(["export", str(finished_run), "-o", str(out)]) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst


def _edit_h5(src: Path, dst: Path, edit: Callable) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _unknown_type(f) -> None:
    del f["node/nodes/lif0/type"]
    f["node/nodes/lif0/type"] = b"Spiky"


def _huge_weight(f) -> None:  # declared, never written: the file stays small
    del f["node/nodes/fc0/weight"]
    f.create_dataset("node/nodes/fc0/weight", shape=(100_000, 100_000), dtype="f8")


def _graph_edit(src: Path, dst: Path, edit: Callable) -> Path:
    graph = nir.read(str(src))
    edit(graph)
    nir.write(str(dst), graph)
    return dst


def _json_edit(run: Path, dst: Path, name: str, edit: Callable[[str], str]) -> Path:
    _copy(run, dst)
    (dst / name).write_text(edit((dst / name).read_text()))
    return dst


def _toml(tmp: Path, text: str, name: str = "run.toml") -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def _fsdd_with(folder: Path, name: str, content: bytes | int) -> str:
    """A small FSDD folder plus one file ``name``: raw bytes, or a WAV of ``content`` frames."""
    _fsdd_folder(folder)
    if isinstance(content, int):
        _wav(folder / name, content)
    else:
        (folder / name).write_bytes(content)
    return str(folder)


def _broken_checkpoint(run: Path, dst: Path) -> str:
    _copy(run, dst)
    (dst / "checkpoints" / "task_001.pt").write_bytes(b"x")
    return str(dst)


def _spiking_readout_run(tmp: Path) -> Path:
    out = tmp / "spikes"
    assert main(["run", *TINY_SNN, "--model-param", "readout=spikes", "--tasks", "1",
                 "-o", str(out)]) == 0
    return out


def _model_folder(nir_path: Path, dst: Path, weights: bytes) -> Path:
    assert main(["import", str(nir_path), "-o", str(dst)]) == 0
    (dst / "model.pt").write_bytes(weights)
    return dst


# --- the table ---------------------------------------------------------------------------------
# (id, argv builder(tmp, finished run, nir file), message that must appear on stderr)

CASES: list[tuple[str, Callable[[Path, Path, Path], list[str]], str]] = [
    # values on the command line
    ("batch-size 0", lambda t, r, n: ["run", *TINY, "--batch-size", "0", "-o", f"{t}/o"],
     r"batch_size = 0 in the command line: must be >= 1"),
    ("batch-size -5", lambda t, r, n: ["run", *TINY, "--batch-size", "-5", "-o", f"{t}/o"],
     r"batch_size = -5 .* must be >= 1"),
    ("samples-per-task 0", lambda t, r, n: ["run", *TINY, "--samples-per-task", "0"],
     r"samples_per_task = 0 .* must be >= 1"),
    ("tasks 0", lambda t, r, n: ["run", *TINY, "--tasks", "0"], r"tasks = 0 .* must be >= 1"),
    ("epochs 0", lambda t, r, n: ["run", *TINY, "--epochs", "0"], r"epochs = 0 .* must be >= 1"),
    ("lr 0", lambda t, r, n: ["run", *TINY, "--lr", "0"], r"lr = 0.0 .* must be > 0"),
    ("lr nan", lambda t, r, n: ["run", *TINY, "--lr", "nan"], r"lr = nan .* finite"),
    ("hidden=0", lambda t, r, n: ["run", *TINY, "--model-param", "hidden=0"],
     r"hidden = 0 in model parameters .* must be >= 1"),
    ("hidden=abc", lambda t, r, n: ["run", *TINY, "--model-param", "hidden=abc"],
     r"hidden = 'abc' in model parameters .* expected a list of integers"),
    ("beta=2", lambda t, r, n: ["run", *TINY, "--model-param", "beta=2"],
     r"beta = 2 in model parameters .* must be <= 1"),
    ("ewc.lam=abc", lambda t, r, n: ["run", *TINY, "-s", "ewc", "-p", "ewc.lam=abc"],
     r"strategy 'ewc' parameter lam='abc' .* expected a number"),
    ("strategy ewc+", lambda t, r, n: ["run", *TINY, "-s", "ewc+"],
     r"strategy 'ewc\+' has an empty part"),
    ("strategy EWC", lambda t, r, n: ["run", *TINY, "-s", "EWC"],
     r"unknown strategy 'EWC' \(did you mean 'ewc'\?\)"),
    ("benchmark split-fminst", lambda t, r, n: ["run", *TINY, "-b", "split-fminst"],
     r"unknown benchmark 'split-fminst' \(did you mean 'split-fmnist'\?\)"),
    ("model snn-mpl", lambda t, r, n: ["run", *TINY, "-m", "snn-mpl"],
     r"unknown model 'snn-mpl' \(did you mean 'snn-mlp'\?\)"),
    ("seed with seeds", lambda t, r, n: ["run", *TINY, "--seed", "3", "--seeds", "0,1"],
     r"--seed 3 and --seeds 0,1 both given"),
    ("seeds 0,0", lambda t, r, n: ["run", *TINY, "--seeds", "0,0"], r"--seeds '0,0' repeats 0"),
    ("seeds a", lambda t, r, n: ["run", *TINY, "--seeds", "0,a"], r"'a' is not an integer"),
    ("fsdd-speakers 99 tasks", lambda t, r, n: [
        "run", *TINY, "-b", "fsdd-speakers", "--tasks", "99",
        "--data-root", str(_fsdd_folder(t / "fsdd"))],
     r"99 tasks asked, the data has 1 speakers"),
    # TOML config files
    ("toml epochs = \"one\"", lambda t, r, n: ["run", *TINY, "--config",
                                               _toml(t, 'epochs = "one"\n')],
     r"epochs = 'one' in .*run\.toml: expected an integer, got str"),
    ("toml batch_size = 12.5", lambda t, r, n: ["run", "--config",
                                                _toml(t, "batch_size = 12.5\n")],
     r"batch_size = 12.5 in .*run\.toml: expected an integer, got float"),
    ("toml strategy_params = 5", lambda t, r, n: ["run", "--config",
                                                  _toml(t, "strategy_params = 5\n")],
     r"strategy_params = 5 in .*run\.toml: expected a table"),
    ("toml lr = \"fast\"", lambda t, r, n: ["run", "--config", _toml(t, 'lr = "fast"\n')],
     r"lr = 'fast' in .*run\.toml: expected a number"),
    ("toml tasks = \"2\"", lambda t, r, n: ["run", "--config", _toml(t, 'tasks = "2"\n')],
     r"tasks = '2' in .*run\.toml: expected an integer"),
    ("toml [model_params] hidden", lambda t, r, n: [
        "run", "-b", "split-digits", "--config", _toml(t, '[model_params]\nhidden = "wide"\n')],
     r"hidden = 'wide' in model parameters"),
    ("toml syntax", lambda t, r, n: ["run", "--config", _toml(t, "epochs = 1 epochs\n")],
     r"config file .*run\.toml is not valid TOML: .*line 1"),
    ("config x.json", lambda t, r, n: ["run", "--config", _toml(t, '{"epochs": 1}', "x.json")],
     r"x\.json is not valid TOML \(a JSON file\? --config reads TOML\)"),
    ("config folder", lambda t, r, n: ["run", "--config", str(t)],
     r"is a folder; --config expects a TOML file"),
    ("config missing", lambda t, r, n: ["run", "--config", f"{t}/none.toml"],
     r"config file .*none\.toml does not exist"),
    # output folders
    ("-o existing file", lambda t, r, n: ["run", *TINY, "-o", _toml(t, "", "file")],
     r"-o .*file is an existing file, not a folder"),
    ("-o under /proc", lambda t, r, n: ["run", *TINY, "-o", "/proc/neurosculpt-run"],
     r"cannot create run folder /proc/neurosculpt-run"),
    ("-o existing run", lambda t, r, n: ["run", *TINY, "-o", str(_copy(r, t / "r"))],
     r"already holds a run .* --resume.* --overwrite"),
    ("--seeds into an existing run", lambda t, r, n: [
        "run", *TINY, "--seeds", "1,0", "-o", str(_copy(r, t / "r" / "seed0").parent)],
     r"seed0 already holds a run"),
    # resume
    ("resume with flags", lambda t, r, n: ["run", "--resume", str(r), "-s", "ewc", "--epochs",
                                           "3", "--lr", "0.5"],
     r"--epochs, --lr, --strategy would be ignored"),
    ("resume, model changed in config.json", lambda t, r, n: [
        "run", "--resume", str(_json_edit(r, t / "r", "config.json",
                                          lambda s: s.replace('"snn-mlp"', '"ann-mlp"')))],
     r"differs from the configuration its checkpoint was written with \(model: 'snn-mlp' -> "
     r"'ann-mlp'; model_params.kind"),
    ("resume, lr changed in config.json", lambda t, r, n: [
        "run", "--resume", str(_json_edit(r, t / "r", "config.json",
                                          lambda s: s.replace('"lr": 0.001', '"lr": 0.5')))],
     r"\(lr: 0.001 -> 0.5\)"),
    ("resume, broken config.json", lambda t, r, n: [
        "run", "--resume", str(_json_edit(r, t / "r", "config.json", lambda s: s[:-20]))],
     r"run config .*config\.json is not valid JSON"),
    ("resume, batch_size 0 in config.json", lambda t, r, n: [
        "run", "--resume", str(_json_edit(r, t / "r", "config.json",
                                          lambda s: s.replace('"batch_size": 64',
                                                              '"batch_size": 0')))],
     r"batch_size = 0 in .*config\.json: must be >= 1"),
    ("resume, not a run", lambda t, r, n: ["run", "--resume", str(t)],
     r"is not a run folder \(no config.json\)"),
    # results of runs
    ("show broken results.json", lambda t, r, n: [
        "show", str(_json_edit(r, t / "r", "results.json", lambda s: "{"))],
     r"results file .*results\.json is not valid JSON"),
    ("compare broken results.json", lambda t, r, n: [
        "compare", str(_json_edit(r, t / "r", "results.json", lambda s: "[1,"))],
     r"results file .*results\.json is not valid JSON"),
    ("show results.json holding a list", lambda t, r, n: [
        "show", str(_json_edit(r, t / "r", "results.json", lambda s: "[1]"))],
     r"results\.json holds list, not a run's results"),
    # data files
    ("IDX wrong magic", lambda t, r, n: [
        "run", *TINY, "-b", "split-fmnist", "--data-root",
        str(_idx_folder(t / "d", images_header=lambda b: b[:3] + b"\x99" + b[4:]))],
     r"train-images-idx3-ubyte has wrong magic number 0x00000899 \(153 dimensions\), expected "
     r"0x00000803"),
    ("IDX not IDX", lambda t, r, n: [
        "run", *TINY, "-b", "split-fmnist", "--data-root",
        str(_idx_folder(t / "d", images_header=lambda b: b"PK\x03\x04" + b[4:]))],
     r"wrong magic number 0x504b0304, expected 0x00000803 .*not an IDX file"),
    ("IDX label 200", lambda t, r, n: [
        "run", *TINY, "-b", "split-fmnist", "--data-root",
        str(_idx_folder(t / "d", labels=np.where(np.arange(20) == 3, 200, np.arange(20) % 10)))],
     r"train-labels-idx1-ubyte holds label 200; the data set has 10 classes"),
    ("WAV with 0 frames", lambda t, r, n: [
        "run", *TINY, "-b", "fsdd-digits", "--data-root", _fsdd_with(t / "w", "3_alice_9.wav", 0)],
     r"bad WAV file .*3_alice_9\.wav: it holds no audio \(0 frames\)"),
    ("WAV of 0 bytes", lambda t, r, n: [
        "run", *TINY, "-b", "fsdd-digits", "--data-root",
        _fsdd_with(t / "w", "4_alice_9.wav", b"")],
     r"bad WAV file .*4_alice_9\.wav: the file is empty \(0 bytes\)"),
    ("WAV cut in its header", lambda t, r, n: [
        "run", *TINY, "-b", "fsdd-digits", "--data-root",
        _fsdd_with(t / "w", "4_alice_9.wav", b"RIFF")],
     r"bad WAV file .*4_alice_9\.wav: .*\S"),
    # NIR files
    ("NIR garbage", lambda t, r, n: ["import", _toml(t, "\x89\x01garbage" * 30, "g.nir")],
     r"g\.nir is not a NIR file: not HDF5"),
    ("NIR empty", lambda t, r, n: ["import", _toml(t, "", "e.nir")],
     r"e\.nir is empty \(0 bytes\)"),
    ("NIR text", lambda t, r, n: ["import", _toml(t, "hello\n", "t.nir")],
     r"t\.nir is not a NIR file: not HDF5 \(it starts with b'hello"),
    ("NIR unknown node type", lambda t, r, n: [
        "import", str(_edit_h5(n, t / "u.nir", _unknown_type)), "-o", f"{t}/m"],
     r"u\.nir: node 'node/nodes/lif0' has type 'Spiky', which nir .* does not define"),
    ("NIR 100000 x 100000 weight", lambda t, r, n: [
        "import", str(_edit_h5(n, t / "h.nir", _huge_weight)), "-o", f"{t}/m"],
     r"h\.nir declares 74\.5 GiB of arrays \(largest: node/nodes/fc0/weight of shape "
     r"\(100000, 100000\)\)"),
    ("NIR NaN weight", lambda t, r, n: [
        "import", str(_graph_edit(n, t / "n.nir",
                                  lambda g: g.nodes["fc0"].weight.__setitem__((0, 0), np.nan))),
        "-o", f"{t}/m"],
     r"n\.nir: node 'fc0' has 1 non-finite value\(s\) \(NaN or infinite\) in weight"),
    ("NIR time_steps 1e12", lambda t, r, n: [
        "import", str(_graph_edit(n, t / "s.nir",
                                  lambda g: g.metadata.__setitem__("time_steps", 1e12))),
        "-o", f"{t}/m"],
     r"s\.nir: metadata time_steps = 1000000000000\.0 is out of range"),
    ("NIR dt -1", lambda t, r, n: [
        "import", str(_graph_edit(n, t / "s.nir", lambda g: g.metadata.__setitem__("dt", -1.0))),
        "-o", f"{t}/m"],
     r"s\.nir: metadata dt = -1\.0 is out of range"),
    ("import --steps 0", lambda t, r, n: ["import", str(n), "--steps", "0", "-o", f"{t}/m"],
     r"steps = 0 is out of range"),
    ("import missing file", lambda t, r, n: ["import", f"{t}/none.nir"],
     r"none\.nir does not exist"),
    # model folders
    ("export, model.pt garbage", lambda t, r, n: [
        "export", str(_model_folder(n, t / "m", b"garbage")), "-o", f"{t}/x.nir"],
     r"model weights .*model\.pt cannot be read \(not a torch file of tensors"),
    ("export, model.pt empty", lambda t, r, n: [
        "export", str(_model_folder(n, t / "m", b"")), "-o", f"{t}/x.nir"],
     r"model weights .*model\.pt cannot be read \(the file is empty or cut short\)"),
    ("energy, model.pt garbage", lambda t, r, n: [
        "energy", str(_model_folder(n, t / "m", b"garbage"))],
     r"model weights .*model\.pt cannot be read"),
    ("export --task 99", lambda t, r, n: ["export", str(r), "--task", "99", "-o", f"{t}/x.nir"],
     r"--task 99: .* holds tasks 0-1"),
    ("export -o under /proc", lambda t, r, n: ["export", str(r), "-o", "/proc/x/m.nir"],
     r"cannot write /proc/x/m\.nir: No such file or directory"),
    ("export --nir-version abc", lambda t, r, n: [
        "export", str(r), "--nir-version", "abc", "-o", f"{t}/x.nir"],
     r"nir version 'abc': expected numbers such as 1\.0\.4"),
    ("export --readout affine of a spike readout", lambda t, r, n: [
        "export", str(_spiking_readout_run(t)), "--readout", "affine", "-o", f"{t}/x.nir"],
     r"readout='affine' is for membrane readouts"),
    ("energy --max-samples 0", lambda t, r, n: ["energy", str(r), "--max-samples", "0"],
     r"--max-samples 0: must be >= 1"),
    ("export, checkpoint garbage", lambda t, r, n: [
        "export", _broken_checkpoint(r, t / "r"), "-o", f"{t}/x.nir"],
     r"checkpoint .*task_001\.pt cannot be read"),
]


@pytest.mark.parametrize("build, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_named_line(tmp_path, finished_run, nir_file, capsys, build, message):
    argv = build(tmp_path, finished_run, nir_file)
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurosculpt: error: "), err
    assert re.search(message, lines[0]), lines[0]


def test_cases_leave_the_finished_run_alone(finished_run):
    """The table breaks copies only: the shared run still resumes as finished."""
    assert runs.read_results(finished_run)["status"] == "complete"


# --- data kept, folders locked -----------------------------------------------------------------


def test_overwrite_replaces_a_run_only_when_asked(tmp_path, finished_run, capsys):
    out = _copy(finished_run, tmp_path / "r")
    before = (out / "results.json").read_bytes()
    assert main(["run", *TINY, "-o", str(out)]) == 2
    assert (out / "results.json").read_bytes() == before  # refused: nothing touched
    assert main(["run", *TINY, "-o", str(out), "--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["model"] == "ann-mlp"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["task_004.pt"]


def test_python_api_refuses_an_existing_run(tmp_path, quick_run):
    runs.run(quick_run, out=tmp_path / "r")
    with pytest.raises(UserError, match="already holds a run"):
        runs.run(quick_run, out=tmp_path / "r")
    runs.run(quick_run, out=tmp_path / "r", overwrite=True)


def test_refused_run_leaves_no_empty_folder(tmp_path):
    assert main(["run", *TINY, "-s", "EWC", "-o", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()


def test_second_writer_is_refused(tmp_path, finished_run, capsys):
    out = _copy(finished_run, tmp_path / "r")
    with lock_run_folder(out):  # another process writing it (flock: per open file)
        assert main(["run", "--resume", str(out)]) == 2
        assert "is being written by another neurosculpt process" in capsys.readouterr().err
        assert main(["run", *TINY, "-o", str(tmp_path / "new")]) == 0  # others unaffected
    assert main(["run", "--resume", str(out), "--quiet"]) == 0


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_lock_of_a_killed_process_does_not_block(tmp_path, capsys):
    folder = tmp_path / "run"
    code = ("import sys, time; from pathlib import Path; "
            "from neurosculpt.validation import lock_run_folder\n"
            f"with lock_run_folder(Path({str(folder)!r})):\n"
            "    print('locked', flush=True); time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"locked"
    with pytest.raises(UserError, match="being written by another"):
        with lock_run_folder(folder):
            pass
    proc.kill()
    proc.wait()
    with lock_run_folder(folder):  # released by the kernel with the process
        pass
    assert list(folder.iterdir()) == []  # and no lock file left behind


def test_two_runs_started_at_once_into_one_folder(tmp_path):
    """Both start; exactly one writes the folder, the other exits 2 saying why."""
    out = tmp_path / "same"
    argv = [sys.executable, "-m", "neurosculpt.cli", "run", *TINY, "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
             for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refusal = next(err for code, err in results if code == 2)
    assert "being written by another" in refusal or "already holds a run" in refusal
    assert runs.read_results(out)["status"] == "complete"


def test_resume_removes_unfinished_writes(tmp_path, finished_run):
    out = _copy(finished_run, tmp_path / "r")
    (out / ".metrics.csv.abc123.tmp").write_text("half")
    (out / "checkpoints" / ".task_002.pt.x.tmp").write_bytes(b"half")
    logged: list[str] = []
    runs.resume(out, log=logged.append)
    assert not list(out.rglob("*.tmp"))
    assert sum("removed unfinished write" in m for m in logged) == 2


def test_full_disk_keeps_finished_tasks_and_resumes(tmp_path, quick_run, monkeypatch, capsys):
    """ENOSPC while checkpointing task 2: tasks 0-1 stay on disk, the error is one line, and
    once space is back ``--resume`` ends exactly like a run that never failed."""
    full = runs.run(quick_run, out=tmp_path / "full")
    real = runs._atomic_write
    state = {"full": False}

    def write(path: Path, fn) -> None:
        if path.name == "task_002.pt":
            state["full"] = True
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, fn)

    monkeypatch.setattr(runs, "_atomic_write", write)
    with pytest.raises(runs.RunFolderError, match="No space left on device.*--resume"):
        runs.run(quick_run, out=tmp_path / "cut")
    cut = tmp_path / "cut"
    kept = runs.read_results(cut)
    assert len(kept["tasks"]) == 2 and kept["status"] == "running"
    assert [p.name for p in (cut / "checkpoints").iterdir()] == ["task_001.pt"]
    assert not list(cut.rglob("*.tmp"))

    monkeypatch.setattr(runs, "_atomic_write", real)  # space freed
    assert main(["run", "--resume", str(cut), "--quiet"]) == 0
    resumed = runs.read_results(cut)
    assert resumed["accuracy_matrix"] == full.accuracy_matrix
    assert resumed["metrics"] == full.metrics


def test_full_disk_from_the_cli_is_one_line(tmp_path, monkeypatch, capsys):
    real = runs._atomic_write

    def write(path: Path, fn) -> None:
        if path.name.startswith("task_"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, fn)

    monkeypatch.setattr(runs, "_atomic_write", write)
    assert main(["run", *TINY, "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "--resume" in err[0]


def test_read_only_folder_is_one_line(tmp_path, monkeypatch, capsys):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert main(["run", *TINY, "-o", str(tmp_path / "ro" / "run")]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "-o" in err and "Traceback" not in err


def test_checkpoint_config_is_checked_on_resume(tmp_path, quick_run):
    runs.run({**quick_run, "tasks": 2}, out=tmp_path / "r")
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    config["epochs"] = 4
    (tmp_path / "r" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match=r"epochs: 1 -> 4"):
        runs.resume(tmp_path / "r")


# --- warnings ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings(f"always:{AT_CHANCE}:UserWarning")  # printed by the CLI, asserted
def test_learning_rate_far_too_high_warns_of_chance(tmp_path, capsys):
    argv = ["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=32",
            "--batch-size", "16", "--epochs", "2", "--lr", "10", "--tasks", "1",
            "--samples-per-task", "400", "--threads", "1", "--quiet", "-o", str(tmp_path / "r")]
    assert main(argv) == 0  # legal, but said
    err = capsys.readouterr().err
    assert "neurosculpt: warning: task 0" in err and "stayed at chance" in err and "--lr" in err
    assert "stayed at chance" in runs.read_results(tmp_path / "r")["tasks"][0]["warnings"][0]


def test_a_normal_run_does_not_warn(tmp_path, capsys):
    argv = ["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=32",
            "--batch-size", "16", "--epochs", "2", "--tasks", "1", "--samples-per-task", "400",
            "--threads", "1", "--quiet", "-o", str(tmp_path / "r")]
    assert main(argv) == 0
    assert capsys.readouterr().err == ""


def test_misnamed_fsdd_file_is_named_in_a_warning(tmp_path):
    from neurosculpt.data import load_fsdd

    folder = _fsdd_folder(tmp_path / "w")
    _wav(folder / "three_alice_1.wav", 400)
    with pytest.warns(NeurosculptWarning, match=r"skipped 1 WAV file.*three_alice_1\.wav"):
        train, test = load_fsdd(folder)
    assert len(train) + len(test) == 70


def test_diverged_loss_is_one_line_exit_1(tmp_path, capsys):
    argv = ["run", *TINY, "--lr", "1e30", "-o", str(tmp_path / "r")]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("neurosculpt: training diverged: loss became")
    assert runs.read_results(tmp_path / "r")["status"] == "diverged"


# --- real bugs keep their traceback --------------------------------------------------------------


def test_unexpected_errors_are_not_swallowed(monkeypatch):
    def broken(args):
        raise KeyError("a bug")

    from neurosculpt import cli

    monkeypatch.setattr(cli, "cmd_list", broken)
    parser_main = cli.main
    with pytest.raises(KeyError):
        parser_main(["list"])


def test_torch_errors_from_inside_are_not_swallowed(monkeypatch):
    from neurosculpt import cli

    def broken(args):
        torch.zeros(2, 3) @ torch.zeros(2, 3)

    monkeypatch.setattr(cli, "cmd_list", broken)
    with pytest.raises(RuntimeError):
        cli.main(["list"])



@pytest.mark.parametrize(("module", "args", "message"), [
    ("matplotlib", lambda t: ["report", str(t), "-o", str(t / "r.html")],
     "plots need matplotlib: pip install 'neurosculpt[plot]'"),
    ("tensorboard", lambda t: ["run", *TINY, "--log", "tensorboard", "-o", str(t / "run")],
     "--log tensorboard needs TensorBoard: pip install 'neurosculpt[tensorboard]'"),
])
def test_a_missing_extra_is_a_one_line_error(tmp_path, capsys, monkeypatch, module, args,
                                             message):
    """An optional package that is not installed is named with the extra that installs it, in
    one line and exit 2, not a traceback."""
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    assert main(args(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"neurosculpt: error: {message}"]
