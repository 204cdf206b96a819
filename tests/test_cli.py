"""The `iterdiff` command: listing, errors that say what to do, and a report that survives a
failing experiment (the experiments themselves are tested in test_experiments_core.py)."""

import os

import pytest

from iterdiff import cli
from iterdiff import experiments as ex
from iterdiff.experiments import Claim, Result, _runner


def _fake_result(name):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return Result(
        name=name,
        title=f"fake {name}",
        source="seed 000",
        claims=[Claim("x converges", "ρ = 0.5", "0.5", True), Claim("y", "1", "2", False, "n")],
        figure=fig,
        notes=["a note"],
    )


@pytest.fixture
def fake_experiments(monkeypatch):
    """Two fast experiments: 'good' returns a Result, 'broken' raises; the real registry is
    replaced so that no real experiment runs."""

    def run_one(name, size, seed):
        if name == "broken":
            try:
                raise ValueError("boom in broken")
            except ValueError as exc:
                return _runner.failure(name, exc)
        return _fake_result(name)

    monkeypatch.setattr(ex, "EXPERIMENTS", {"good": "good", "broken": "broken"})
    monkeypatch.setattr(_runner, "run_one", run_one)


def test_list_names_every_experiment(capsys):
    assert cli.main(["report", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ex.EXPERIMENTS:
        assert name in out


def test_unknown_experiment_is_a_one_line_error(capsys, tmp_path):
    assert cli.main(["report", "--only", "rates,nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "'nope'" in err and "iterdiff report --list" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; a file is used below")
def test_unwritable_directory_is_a_one_line_error(capsys, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert cli.main(["report", "--only", "rates", "--out", str(ro / "sub")]) == 2
    assert "--out DIR" in capsys.readouterr().err


def test_output_path_that_is_a_file_is_a_one_line_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["report", "--only", "rates", "--out", str(blocker / "report")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write the report" in err and "--out DIR" in err


def test_failed_experiment_still_writes_the_report(fake_experiments, capsys, tmp_path):
    assert cli.main(["report", "--out", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "broken" in captured.err and "iterdiff report --only broken" in captured.err
    assert "FAILED" in captured.out and "DISAGREES" in captured.out and "agrees" in captured.out
    page = (tmp_path / "index.html").read_text()
    assert "fake good" in page and "data:image/png;base64," in page
    assert "failed to run" in page and "boom in broken" in page and "Traceback" in page
    assert "jaxlib" in page and "float64" in page


def test_missing_module_shows_as_failed_to_import():
    ex.EXPERIMENTS["_missing_for_test"] = "_missing_for_test"
    try:
        result = _runner.run_one("_missing_for_test", "tiny", 0)
    finally:
        del ex.EXPERIMENTS["_missing_for_test"]
    assert result.failed and not result.passed
    assert result.error.startswith("could not import iterdiff.experiments._missing_for_test")


def test_demo_runs_every_registered_experiment(fake_experiments, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["demo"]) == 1  # 'broken' fails
    assert (tmp_path / "iterdiff-report" / "index.html").exists()
