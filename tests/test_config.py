"""Study files: the command line's names are accepted flat; an unknown field says where fields go."""

from __future__ import annotations

import pytest

from conftest import experiments
from robustcli.config import load_settings
from robustcli.errors import InputError


def _write(tmp_path, text: str):
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_early_stopping_and_selection_fields_may_stand_at_the_top_level(tmp_path):
    path = _write(
        tmp_path,
        'task = "synthetic"\nmax_epochs = 60\nstop_mode = "spike"\nrule = "race"\n[early_stopping]\nmin_epochs = 3\n',
    )
    s = load_settings(path)
    assert (s.training.early_stopping.max_epochs, s.training.early_stopping.mode) == (60, "spike")
    assert s.training.early_stopping.min_epochs == 3 and s.selection.rule == "race"
    assert load_settings(path, max_epochs=70).training.early_stopping.max_epochs == 70  # the command line wins
    one = load_settings(_write(tmp_path, 'criterion = "mean,std"\ncandidates = "small"\nwhere = "lr=0.01"\n'))
    assert (one.selection.criterion, one.selection.candidates, one.selection.where) == (["mean", "std"], ["small"], ["lr=0.01"])
    nested = _write(tmp_path, 'task = "synthetic"\n[early_stopping]\nstop_mode = "spike"\n')
    assert load_settings(nested).training.early_stopping.mode == "spike"


def test_a_field_set_twice_is_refused(tmp_path):
    path = _write(tmp_path, "max_epochs = 60\n[early_stopping]\nmax_epochs = 80\n")
    with pytest.raises(InputError, match="'max_epochs' is set twice: at the top level and in \\[early_stopping\\]"):
        load_settings(path)


def test_unknown_field_names_where_fields_belong(app, runner, workdir):
    (workdir / "typo.toml").write_text('task = "synthetic"\ncandidate = "small"\nmax_epoch = 60\n')
    (workdir / "wrong.toml").write_text('task = "synthetic"\n[selection]\nmax_epochs = 60\n')
    typo = runner.invoke(app, ["assess", "-c", "typo.toml"])
    assert typo.exit_code == 2 and typo.stderr.count("\n") == 1, typo.stderr
    assert typo.stderr.startswith(
        "error: typo.toml: unknown field 'max_epoch' at the top level; did you mean 'max_epochs' "
        "([early_stopping] or top level)? (fields: top level: task, study, seed,"
    )
    assert "[early_stopping] or top level: min_epochs, window, threshold, mode (stop_mode), max_epochs" in typo.stderr
    wrong = runner.invoke(app, ["assess", "-c", "wrong.toml"])
    assert wrong.exit_code == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert "unknown field 'max_epochs' in [selection]; it belongs in [early_stopping] or top level (" in wrong.stderr
    assert experiments() == []
