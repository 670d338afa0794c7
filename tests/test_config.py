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


def test_sample_size_sizes_in_a_study_file(tmp_path):
    """`sizes` of `robust study sample-size`: a [sample_size] field, or at the top level, a list or
    the command line's text; the command line overrides it; bad sizes get --sizes's error line."""
    listed = load_settings(_write(tmp_path, "[sample_size]\nsizes = [200, 50, 100, 50]\n"))
    assert listed.sample_size.sizes == [50, 100, 200]
    ranged = _write(tmp_path, 'task = "synthetic"\nsizes = "100:32000:45"\n')
    paper = load_settings(ranged).sample_size.sizes
    assert len(paper) == 45 and (paper[0], paper[-1]) == (100, 32000)
    assert load_settings(ranged, sizes="50,100").sample_size.sizes == [50, 100]  # the command line wins
    assert load_settings(_write(tmp_path, "sizes = 300\n")).sample_size.sizes == [300]
    assert load_settings(_write(tmp_path, 'task = "synthetic"\n')).sample_size.sizes is None
    with pytest.raises(InputError, match="'sizes' is set twice: at the top level and in \\[sample_size\\]"):
        load_settings(_write(tmp_path, "sizes = [50]\n[sample_size]\nsizes = [100]\n"))
    with pytest.raises(InputError, match=r"study.toml: sizes='200:100:3': a range needs 1 <= START <= STOP"):
        load_settings(_write(tmp_path, 'sizes = "200:100:3"\n'))
    with pytest.raises(InputError, match=r"sizes='50,-5': '-5' is not a positive whole number"):
        load_settings(_write(tmp_path, "sizes = [50, -5]\n"))
    with pytest.raises(InputError, match=r"sizes \[50, 1.5\]: expected a list of whole numbers"):
        load_settings(_write(tmp_path, "sizes = [50, 1.5]\n"))
    with pytest.raises(InputError, match=r"unknown field 'size' in \[sample_size\]; did you mean 'sizes' \(\[sample_size\] or top level\)"):
        load_settings(_write(tmp_path, "[sample_size]\nsize = [50]\n"))


def test_the_example_study_files_load():
    """examples/studies/*.toml (the demo, the paper's full-scale studies) stay valid study files."""
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "examples" / "studies").glob("*.toml"))
    assert len(files) >= 5
    settings = {f.stem: load_settings(f) for f in files}
    assert len(settings["paper-sample-size"].sample_size.sizes) == 45  # the paper's footnote 7
    assert settings["paper-baselines"].sample_size.sizes == [8000, 16000, 24000, 32000]
    assert (settings["paper-variance"].instances, settings["paper-variance"].training.train_size) == (1000, 32000)
