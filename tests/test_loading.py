import pytest

from neurosculpt.loading import is_spec, load_object


def test_file_and_module_specs(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("def factory():\n    return 42\n")
    assert load_object(f"{f}:factory")() == 42
    assert load_object(f"{f}:factory") is load_object(f"{f}:factory")
    assert load_object("neurosculpt.loading:is_spec") is is_spec
    assert is_spec("a.py:b") and is_spec("pkg.mod:f") and not is_spec("snn-mlp")


@pytest.mark.parametrize("spec, message", [
    ("nofile.py:f", "does not exist"),
    ("no_such_module_xyz:f", "cannot be imported"),
    ("neurosculpt.loading:missing", "has no attribute 'missing'"),
    ("justaname", "expected"),
])
def test_bad_specs_name_the_input(spec, message):
    with pytest.raises(ValueError, match=message):
        load_object(spec, "model factory")


def test_file_that_raises_on_import(tmp_path):
    f = tmp_path / "broken.py"
    f.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ValueError, match="failed to import: RuntimeError: boom"):
        load_object(f"{f}:x")
