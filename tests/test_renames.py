"""Renamed names keep working: old strategy parameters (``max_neurons`` ...) are mapped with a
warning, run folders written before the rename (``results.json`` with ``neurons`` ...) still
show, compare, report and resume; the docs and ``neurosculpt list`` use the current names."""

from __future__ import annotations

import copy
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from run_folders import simulate_crash

import neurosculpt
from neurosculpt.cli import main
from neurosculpt.figures import structure_over_stream
from neurosculpt.strategies import (
    REGISTRY,
    Strategy,
    available,
    describe,
    make_strategies,
    make_strategy,
    parameters,
    register,
)
from neurosculpt.validation import NeurosculptWarning

ROOT = Path(__file__).resolve().parents[1]

# the names before the rename, written out here (not taken from neurosculpt.renames) so that
# these tests fail if that table loses an entry
OLD_PARAMS = {"max_units": "max_neurons", "min_units": "min_neurons", "keep_units": "keep_neurons"}
PARAMS = {"develop": {"keep_units": 0.5, "max_units": 40},
          "neuroplastic": {"actions": "renew,reinit,prune", "maturity": 1, "prune_utility": 2.0,
                           "min_units": 4, "max_units": 1.25, "check_every": 0, "log_every": 0,
                           "every": 1}}


@pytest.fixture(autouse=True)
def _every_warning():
    """Python shows a warning once per message and place; each test here wants to see it."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield


def _rekey(record: dict, keys: dict[str, str]) -> None:
    for new, old in keys.items():
        assert new in record, f"{new} missing from {sorted(record)}: the test would prove nothing"
        record[old] = record.pop(new)


def _old_task(task: dict) -> dict:
    """A task record as neurosculpt wrote it before the rename."""
    task = copy.deepcopy(task)
    _rekey(task, {"units": "neurons"})
    for phase in task["structure"].values():
        _rekey(phase, {"units": "neurons", "live_units": "live_neurons"})
    for snapshot in task["plasticity"]["signals"]:
        for layer in snapshot["layers"][:-1]:  # hidden layers
            _rekey(layer, {"units": "neurons", "headroom": "free_neurons"})
    for decision in task["plasticity"]["decisions"]:
        if "units" in decision["why"]:
            _rekey(decision["why"], {"units": "neurons"})
    _rekey(task["develop"], {"removed_units": "removed_neurons"})
    return task


def _old_config(config: dict) -> dict:
    config = copy.deepcopy(config)
    for params in config["strategy_params"].values():
        for new, old in OLD_PARAMS.items():
            if new in params:
                params[old] = params.pop(new)
    return config


def _make_old(folder: Path) -> None:
    """Rewrite a run folder (config.json, results.json, checkpoints) in the old names."""
    results = json.loads((folder / "results.json").read_text())
    results["config"] = _old_config(results["config"])
    results["tasks"] = [_old_task(t) for t in results["tasks"]]
    assert any(d["why"].get("neurons") for t in results["tasks"]
               for d in t["plasticity"]["decisions"])
    (folder / "results.json").write_text(json.dumps(results))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(_old_config(config)))
    for checkpoint in (folder / "checkpoints").glob("task_*.pt"):
        state = torch.load(checkpoint, weights_only=True)
        state["run_config"] = _old_config(state["run_config"])
        state["learner"]["tasks"] = [_old_task(t) for t in state["learner"]["tasks"]]
        torch.save(state, checkpoint)


@pytest.fixture
def full_run(tmp_path, quick_run):
    """neuroplastic+develop, 5 tasks, every checkpoint kept: every renamed key is written."""
    quick_run.update(strategy="neuroplastic+develop", keep_checkpoints=True,
                     strategy_params=copy.deepcopy(PARAMS))
    return neurosculpt.run(quick_run, out=tmp_path / "new")


def test_an_old_run_folder_reads_as_a_new_one(tmp_path, full_run, capsys):
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "new", old)
    _make_old(old)
    assert "keep_neurons" in (old / "results.json").read_text()
    assert neurosculpt.read_results(old) == neurosculpt.read_results(tmp_path / "new")
    outputs = []
    for folder in (tmp_path / "new", old):
        assert main(["show", str(folder)]) == 0
        assert main(["compare", str(folder)]) == 0
        outputs.append(capsys.readouterr())
    assert outputs[0] == outputs[1] and not outputs[1].err
    assert structure_over_stream([neurosculpt.read_results(old)], "old") is not None
    assert main(["report", str(old), "-o", str(tmp_path / "report.html")]) == 0
    assert "No run recorded its structure" not in (tmp_path / "report.html").read_text()


def test_an_old_run_folder_resumes_with_one_warning_and_the_same_results(tmp_path, full_run,
                                                                         capsys):
    cut = tmp_path / "cut"
    simulate_crash(tmp_path / "new", cut, 2)
    _make_old(cut)
    assert main(["run", "--resume", str(cut), "--quiet"]) == 0
    err = capsys.readouterr().err.splitlines()
    renamed = [line for line in err if "deprecated" in line]
    assert len(renamed) == sum(k in OLD_PARAMS for p in PARAMS.values() for k in p) == 4
    assert all(line.startswith("neurosculpt: warning: strategy ") for line in renamed)
    assert any("'keep_neurons' is now called 'keep_units'" in line for line in renamed)
    resumed = neurosculpt.read_results(cut)
    assert resumed["accuracy_matrix"] == full_run.accuracy_matrix
    assert [t["loss"] for t in resumed["tasks"]] == [t["loss"] for t in full_run.results["tasks"]]
    assert [t["units"] for t in resumed["tasks"]] == [t["units"] for t in full_run.results["tasks"]]
    written = (cut / "results.json").read_text() + (cut / "config.json").read_text()
    for old in ("keep_neurons", "max_neurons", "min_neurons", "live_neurons", "free_neurons",
                "removed_neurons"):
        assert old not in written  # the folder now holds the current names throughout
    assert json.loads((cut / "config.json").read_text())["strategy_params"] == \
        full_run.results["config"]["strategy_params"]


def test_an_old_parameter_name_runs_and_warns_once(tmp_path, capsys):
    assert main(["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=8",
                 "--steps", "2", "--tasks", "2", "--samples-per-task", "32",
                 "--test-samples-per-task", "16", "-s", "develop", "-p", "keep_neurons=0.5",
                 "--quiet", "-o", str(tmp_path / "cli")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["neurosculpt: warning: strategy 'develop': parameter 'keep_neurons' is now "
                   "called 'keep_units'; the old name still works but is deprecated"]
    params = neurosculpt.read_results(tmp_path / "cli")["config"]["strategy_params"]["develop"]
    assert params["keep_units"] == 0.5 and "keep_neurons" not in params
    with pytest.warns(NeurosculptWarning, match="'max_neurons' is now called 'max_units'"):
        strategies = make_strategies("neuroplastic+ewc", {"neuroplastic": {"max_neurons": 2.0}})
    assert strategies[0].hparams["max_units"] == 2.0
    with pytest.warns(NeurosculptWarning, match="'min_neurons' is now called 'min_units'"):
        assert make_strategy("dropin", {"min_neurons": 3}).min_units == 3


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(ValueError, match="'max_neurons' and 'max_units' both given"):
        make_strategy("dsd", {"max_neurons": 8, "max_units": 8})


def test_an_old_name_in_a_config_file_and_the_api(tmp_path, quick_run, capsys):
    config = tmp_path / "run.toml"
    config.write_text('benchmark = "split-digits"\nmodel = "ann-mlp"\nsteps = 2\ntasks = 2\n'
                      "samples_per_task = 32\ntest_samples_per_task = 16\n"
                      "[model_params]\nhidden = [8]\n[strategy_params.dsd]\nmax_neurons = 12\n")
    assert main(["run", "--config", str(config), "-s", "dsd", "--quiet",
                 "-o", str(tmp_path / "toml")]) == 0
    assert "'max_neurons' is now called 'max_units'" in capsys.readouterr().err
    recorded = neurosculpt.read_results(tmp_path / "toml")["config"]["strategy_params"]["dsd"]
    assert recorded["max_units"] == 12 and "max_neurons" not in recorded
    quick_run.update(tasks=1, strategy="dsd", strategy_params={"max_neurons": [40, 36]})
    with pytest.warns(NeurosculptWarning, match="'max_neurons' is now called 'max_units'"):
        result = neurosculpt.run(quick_run)
    assert result.results["config"]["strategy_params"]["dsd"]["max_units"] == [40, 36]


def test_a_users_own_parameter_with_an_old_name_is_left_alone():
    @register
    class Keeper(Strategy):
        """Keeps its own max_neurons.

        Args:
            max_neurons: a parameter of the user's own strategy.
        """

        name = "keeper-test"

        def __init__(self, max_neurons: int = 1) -> None:
            super().__init__()
            self.max_neurons = max_neurons

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert make_strategy("keeper-test", {"max_neurons": 5}).max_neurons == 5
    finally:
        REGISTRY.pop("keeper-test")


def test_old_python_names_still_work_with_a_warning():
    from neurosculpt.layers import PlasticLinear
    from neurosculpt.plasticity import UNIT_SCORES, unit_scores

    with pytest.warns(NeurosculptWarning, match="neuron_scores is now called unit_scores"):
        from neurosculpt.plasticity import neuron_scores
    assert neuron_scores is unit_scores
    with pytest.warns(NeurosculptWarning, match="NEURON_SCORES is now called UNIT_SCORES"):
        from neurosculpt.plasticity.importance import NEURON_SCORES
    assert NEURON_SCORES is UNIT_SCORES
    layer = PlasticLinear(3, 2)
    with pytest.warns(NeurosculptWarning, match="live_neurons is now called live_units"):
        assert layer.live_neurons() == layer.live_units() == 2
    with pytest.raises(ImportError):
        from neurosculpt.plasticity import no_such_name  # noqa: F401


@pytest.mark.parametrize("name", available())
def test_list_shows_only_current_parameter_names(name):
    text = describe(name)
    assert not any(old in text for old in OLD_PARAMS.values())
    names = {p["name"] for p in parameters(name)}
    assert {"develop": {"max_units", "keep_units"}, "dsd": {"max_units"},
            "dropin": {"max_units", "min_units"},
            "neuroplastic": {"max_units", "min_units"}}.get(name, set()) <= names


def _doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_name_current_strategy_parameters():
    """Every ``-p [strategy.]key=value`` in README/docs names a parameter ``neurosculpt list``
    shows, and no doc uses an old parameter name."""
    known = {name: {p["name"] for p in parameters(name)} for name in available()}
    anywhere = set().union(*known.values())
    checked = 0
    for path in _doc_files():
        text = "\n".join(line for line in path.read_text().split("## Renamed keys")[0]
                         .splitlines() if "#renamed-keys" not in line)  # where old names are
        for old in OLD_PARAMS.values():
            assert old not in text, f"{path.name} still says {old}"
        for strategy, key in re.findall(r"-p (?:([a-z0-9-]+)\.)?([a-z_]+)=", text):
            assert key in (known[strategy] if strategy else anywhere), \
                f"{path.name}: -p {strategy + '.' if strategy else ''}{key} is no parameter"
            checked += 1
    assert checked > 20
    results = (ROOT / "docs" / "results.md").read_text()
    for key in ("keep_units", "prune_end", "recover_fraction"):  # the develop study's names
        assert f"`{key}`" in results and key in known["develop"]
