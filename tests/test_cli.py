"""The ``neurosculpt`` command: help, run, show, compare, list, and errors a user can act on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from neurosculpt import BENCHMARKS, MODELS, read_results
from neurosculpt.cli import main
from neurosculpt.strategies import available

TINY = ["-b", "split-digits", "-m", "ann-mlp", "--epochs", "1", "--batch-size", "64",
        "--samples-per-task", "64", "--test-samples-per-task", "30",
        "--model-param", "hidden=16,16", "--threads", "1"]


@pytest.mark.skipif(shutil.which("neurosculpt") is None, reason="console script not installed")
def test_installed_command_lists_subcommands():
    done = subprocess.run(["neurosculpt", "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("run", "show", "compare", "list"):
        assert command in done.stdout


@pytest.mark.parametrize("command", [[], ["run"], ["show"], ["compare"], ["list"], ["report"],
                                     ["sweep"]])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: neurosculpt" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_run_quiet_prints_only_the_table_then_show(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", *TINY, "--quiet", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bars either
    lines = captured.out.splitlines()
    assert lines[0].startswith("split-digits (task), strategy naive, model ann-mlp, seed 0")
    assert lines[0].endswith("complete")
    assert "accuracy (%)" in captured.out and "metrics (%): acc" in captured.out
    assert sum(line.startswith("after ") for line in lines) == 5
    assert (out / "results.json").is_file()

    assert main(["show", str(out)]) == 0
    assert capsys.readouterr().out == captured.out


def test_run_logs_progress_unless_quiet(tmp_path, capsys):
    assert main(["run", *TINY, "--no-progress", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {tmp_path}" in out
    assert "task 5/5" in out


def test_params_reach_the_model_and_strategy(tmp_path, capsys):
    assert main(["run", *TINY, "--quiet", "--model-param", "hidden=24", "--tasks", "2",
                 "--out", str(tmp_path)]) == 0
    results = read_results(tmp_path)
    assert results["config"]["model_params"]["hidden"] == [24]
    assert results["tasks"][0]["units"] == [24]
    assert len(results["accuracy_matrix"]) == 2
    assert main(["run", *TINY, "-p", "lam=3", "--out", str(tmp_path / "x")]) == 2
    assert "no parameter(s) ['lam']" in capsys.readouterr().err


def test_eval_scope_current_tests_only_the_new_task(tmp_path):
    assert main(["run", *TINY, "--quiet", "--tasks", "2", "--eval-scope", "current",
                 "--out", str(tmp_path)]) == 0
    results = read_results(tmp_path)
    assert results["config"]["eval_scope"] == "current"
    assert results["accuracy_matrix"][0][1] is None and results["accuracy_matrix"][1][0] is None
    assert results["metrics"]["acc"] is None and results["metrics"]["learning_acc"] is not None


def test_compare_two_seeds_gives_mean_and_std(tmp_path, capsys):
    assert main(["run", *TINY, "--quiet", "--seeds", "0,1", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0", "seed1"]
    capsys.readouterr()
    assert main(["compare", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("split-digits/task"))
    assert row.split()[3] == "2"  # seeds
    assert "±" in row
    assert read_results(tmp_path / "seed0")["accuracy_matrix"] != read_results(
        tmp_path / "seed1")["accuracy_matrix"]


def test_compare_keeps_different_settings_apart(tmp_path, capsys):
    for lr in ("0.01", "0.001"):
        assert main(["run", *TINY, "--quiet", "--tasks", "2", "--lr", lr,
                     "--out", str(tmp_path / lr)]) == 0
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "0.01"), str(tmp_path / "0.001")]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines()
            if line.startswith("split-digits/task")]
    assert len(rows) == 2
    assert "lr=0.01" in rows[0] + rows[1] and "lr=0.001" in rows[0] + rows[1]


def test_compare_without_runs_is_an_error(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "no results.json" in capsys.readouterr().err


def test_list_names_everything(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (*BENCHMARKS, *MODELS, *available()):
        assert name in out


@pytest.mark.parametrize("flag, value, valid", [
    ("-b", "split-cifar", BENCHMARKS),
    ("-s", "dropout", ("naive", "ewc")),
    ("-m", "snn-lstm", MODELS),
])
def test_unknown_names_exit_2_listing_valid_ones(flag, value, valid, tmp_path, capsys):
    assert main(["run", *TINY, flag, value, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert value in err
    assert all(name in err for name in valid)


def test_unknown_toml_key_exits_2(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('benchmark = "split-digits"\nlearning_rate = 0.1\n')
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "learning_rate" in err and str(path) in err


def test_missing_data_names_the_places_searched(tmp_path, capsys, monkeypatch):
    assert main(["run", "-b", "split-mnist", "--data-root", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "MNIST not found" in err and "/nonexistent" in err

    if Path("/usr/share/datasets/mnist").exists():
        pytest.skip("a system copy of MNIST exists")
    monkeypatch.delenv("NEUROSCULPT_MNIST", raising=False)
    monkeypatch.setenv("NEUROSCULPT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NEUROSCULPT_CACHE", str(tmp_path / "cache"))
    assert main(["run", "-b", "split-mnist"]) == 2
    err = capsys.readouterr().err
    for place in ("$NEUROSCULPT_MNIST", str(tmp_path / "data"), "/usr/share/datasets/mnist",
                  str(tmp_path / "cache")):
        assert place in err


def test_resume_via_cli(tmp_path, capsys):
    assert main(["run", *TINY, "--quiet", "--tasks", "2", "--keep-checkpoints",
                 "--out", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    (tmp_path / "checkpoints" / "task_001.pt").unlink()
    assert main(["run", "--resume", str(tmp_path), "--quiet"]) == 0
    again = capsys.readouterr().out
    # the same matrix and metrics; only the wall time differs
    assert first.splitlines()[:6] == again.splitlines()[:6]


def test_registered_user_strategy_runs_by_name(tmp_path):
    """A strategy defined outside the package is usable by name after ``register``."""
    import neurosculpt
    from neurosculpt import strategies

    class CountSteps(strategies.Strategy):
        name = "count-steps-test"

        def __init__(self) -> None:
            super().__init__()
            self.steps = 0

        def after_step(self, ctx) -> None:
            self.steps += 1

    strategies.register(CountSteps)
    try:
        result = neurosculpt.run(benchmark="split-digits", strategy="count-steps-test",
                                 model="ann-mlp", tasks=5, steps=3, progress=False)
        assert result.strategies[0].steps == 15
        assert "count-steps-test" in strategies.available()
    finally:
        strategies.REGISTRY.pop("count-steps-test")


def test_parameters_for_a_strategy_not_in_the_spec_are_ignored_and_said():
    """One config may carry every strategy's section (a sweep shares one file)."""
    from neurosculpt.strategies import make_strategies

    said: list[str] = []
    built = make_strategies("online-ewc", {"ewc": {"lam": 1.0}, "online-ewc": {"lam": 2.0}},
                            log=said.append)
    assert [s.name for s in built] == ["online-ewc"] and built[0].lam == 2.0
    assert said == ["strategy parameters for ewc ignored: 'online-ewc' does not use it"]
    with pytest.raises(ValueError, match=r"\['ewx'\].*no strategy"):
        make_strategies("online-ewc", {"ewx": {"lam": 1.0}})
    with pytest.raises(ValueError, match=r"no parameter\(s\) \['lamda'\]"):
        make_strategies("online-ewc", {"ewc": {"lam": 1.0}, "online-ewc": {"lamda": 2.0}})


def test_run_sequence_feeds_image_rows_to_the_model(tmp_path, capsys):
    """``--sequence``: the spiking MLP reads a digit one 8-pixel row per time step."""
    out = tmp_path / "rows"
    assert main(["run", *TINY[2:], "-b", "permuted-label-digits", "--tasks", "2", "-m",
                 "snn-mlp", "--sequence", "--quiet", "--out", str(out)]) == 0
    results = read_results(out)
    assert results["config"]["sequence"] is True
    assert results["benchmark"]["input_shape"] == [8, 8]
    assert len(results["accuracy_matrix"]) == 2
