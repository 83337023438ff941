"""Strategies a user can read and trust: every parameter documented with its default and tuned
values (``neurosculpt list STRATEGY``), shared config files for sweeps, a loud failure for state
a checkpoint would lose, and a warning when a mechanism cannot act in the configured stream."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import neurosculpt
from neurosculpt.cli import main
from neurosculpt.strategies import REGISTRY, Strategy, available, describe, parameters, register
from neurosculpt.strategies.describe import TUNED

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"benchmark": "split-digits", "model": "ann-mlp", "steps": 3, "batch_size": 16,
         "samples_per_task": 32, "test_samples_per_task": 16, "progress": False,
         "model_params": {"hidden": (8, 8)}, "tasks": 5}


@pytest.mark.parametrize("name", available())
def test_every_parameter_of_every_strategy_is_documented(name):
    for p in parameters(name):
        assert p["doc"], f"{name}.{p['name']} has no entry in the Args: section"
    text = describe(name)
    assert text.startswith(f"{name}: ") and "(undocumented)" not in text


def test_list_strategy_prints_parameters_defaults_meaning_and_tuned_values(capsys):
    assert main(["list", "ewc"]) == 0
    out = capsys.readouterr().out
    assert "lam = 1000.0" in out and "fisher_samples = 256" in out
    assert "strength of the penalty" in out
    assert "tuned (docs/results.md): split-fmnist/task 100000" in out
    assert "fsdd-speakers/domain 10000" in out
    assert main(["list", "develop"]) == 0
    assert "recover_lr = 1.0" in capsys.readouterr().out
    assert main(["list", "nosuch"]) == 2
    assert "unknown strategy 'nosuch'" in capsys.readouterr().err


def test_tuned_values_match_docs_results():
    """TUNED was copied from the tables of docs/results.md; they must stay in step."""
    text = (ROOT / "docs" / "results.md").read_text()
    found: dict = {}
    table = None
    for line in text.splitlines():
        heading = re.match(r"### (\S+/\S+)$", line)
        if heading:
            table = heading.group(1)
        elif line.startswith("## "):
            table = None
        elif table and line.startswith("| ") and not line.startswith("| strategy"):
            strategy, setting = [c.strip() for c in line.strip("|").split("|")][:2]
            for pair in setting.split(", "):
                if "=" in pair:
                    key, value = pair.split("=")
                    found.setdefault(strategy, {}).setdefault(key, {})[table] = float(value)
    assert found == TUNED


def test_a_shared_config_file_runs_every_strategy_it_names(tmp_path, capsys):
    config = tmp_path / "sweep.toml"
    config.write_text('benchmark = "split-digits"\nmodel = "ann-mlp"\nsteps = 2\n'
                      'samples_per_task = 32\ntest_samples_per_task = 16\n'
                      "[model_params]\nhidden = [8, 8]\n"
                      "[strategy_params.ewc]\nlam = 10.0\n"
                      "[strategy_params.si]\nc = 0.5\n")
    for strategy, unused in (("naive", "ewc, si"), ("ewc", "si"), ("si", "ewc")):
        out = tmp_path / strategy
        assert main(["run", "--config", str(config), "-s", strategy, "--no-progress",
                     "-o", str(out)]) == 0
        assert f"strategy parameters for {unused} ignored" in capsys.readouterr().out
        recorded = neurosculpt.read_results(out)["config"]["strategy_params"]
        assert list(recorded) == [strategy]
    assert recorded == {"si": {"c": 0.5, "xi": 0.001}}
    config.write_text(config.read_text() + "[strategy_params.naive]\nlamda = 1\n")
    assert main(["run", "--config", str(config), "-s", "naive", "-o", str(tmp_path / "x")]) == 2
    assert "no parameter(s) ['lamda']" in capsys.readouterr().err


class _Forgetful(Strategy):
    """Counts batches per task in a plain dict: a checkpoint does not hold it."""

    name = "forgetful-test"

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[int, int] = {}

    def after_step(self, ctx) -> None:
        self.counts[ctx.task_id] = self.counts.get(ctx.task_id, 0) + 1


class _Careful(_Forgetful):
    """The same count, kept through get_extra_state / set_extra_state."""

    name = "careful-test"

    def get_extra_state(self) -> dict:
        return {"counts": {str(k): v for k, v in self.counts.items()}}

    def set_extra_state(self, state: dict) -> None:
        self.counts = {int(k): v for k, v in state["counts"].items()}


@pytest.fixture
def registered():
    before = dict(REGISTRY)
    register(_Forgetful)
    register(_Careful)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


def test_state_a_checkpoint_would_lose_fails_at_the_first_checkpoint(tmp_path, registered,
                                                                     capsys):
    with pytest.raises(ValueError, match=r"'forgetful-test' keeps state in counts"):
        neurosculpt.run({**QUICK, "strategy": "forgetful-test"}, out=tmp_path / "a")
    results = neurosculpt.read_results(tmp_path / "a")
    assert results["status"] == "failed" and "counts" in results["error"]
    assert not (tmp_path / "a" / "checkpoints").exists()
    result = neurosculpt.run({**QUICK, "strategy": "careful-test"}, out=tmp_path / "b")
    assert result.strategies[0].counts == {k: 3 for k in range(5)}
    assert main(["run", "-b", "split-digits", "-s", "forgetful-test", "-m", "ann-mlp",
                 "--steps", "2", "--tasks", "2", "-o", str(tmp_path / "c"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "keeps state in counts" in err and len(err.strip().splitlines()) == 1


def test_strategy_without_recorded_parameters_cannot_checkpoint(tmp_path):
    class Needs(Strategy):
        name = "needs-test"

        def __init__(self, k: int) -> None:
            super().__init__()
            self.k = k

    learner_run = neurosculpt.runs.Run(neurosculpt.RunConfig(**QUICK), tmp_path)
    learner_run.strategies = [Needs(3)]
    learner_run.learner.strategies = learner_run.strategies
    with pytest.raises(ValueError, match="cannot be rebuilt from its recorded parameters"):
        learner_run.execute()


def test_neuroplastic_warns_once_when_tasks_are_shorter_than_its_thresholds():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = neurosculpt.run({**QUICK, "strategy": "neuroplastic", "steps": 20})
    messages = [str(w.message) for w in caught if "neuroplastic" in str(w.message)]
    assert len(messages) == 1
    assert "task 0 trains 20 steps" in messages[0] and "400 steps" in messages[0]
    assert "check_every=100" in messages[0] and "maturity=100" in messages[0]
    assert messages[0] in result.results["tasks"][0]["log"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neurosculpt.run({**QUICK, "strategy": "neuroplastic", "steps": 20, "tasks": 1,
                         "strategy_params": {"plateau_window": 5, "check_every": 10,
                                             "maturity": 10}})
    assert not [w for w in caught if "neuroplastic" in str(w.message)]


def test_describe_reads_google_style_args():
    from neurosculpt.strategies.describe import docstring_args

    class Doc:
        """Summary.

        Args:
            a: first line
                continued.
            b (int): second.

        Returns nothing.
        """

    assert docstring_args(Doc) == {"a": "first line continued.", "b": "second."}
