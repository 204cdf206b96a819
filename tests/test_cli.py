"""The `iterdiff` command: listing, errors that say what to do, --version, progress lines in a
log, a summary that wraps instead of cutting, no JAX import for help and mistakes, and a report
that survives a failing experiment (the experiments themselves are tested in
test_experiments_core.py and test_experiments_extra.py)."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

import iterdiff
from iterdiff import cli
from iterdiff import experiments as ex
from iterdiff.experiments import Claim, Result, _runner
from iterdiff.experiments._base import NOT_REPRODUCED, PARTLY, REPRODUCED

LONG = "a measured value with many words " * 6 + "THE-END"


def _fake_result(name):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    fig.subplots().plot([0, 1], [1, 0])
    return Result(
        name=name,
        title=f"fake {name}",
        source="A. Author, “A paper”, Venue 2024",
        claims=[
            Claim("x converges", "ρ = 0.5", "0.5", REPRODUCED, "within 1 %"),
            Claim("y", "1", LONG, PARTLY, "reproduced: = 1; partly: ≤ 3", "n"),
            Claim("z", "1", "9", NOT_REPRODUCED, "reproduced: = 1"),
        ],
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
    for word in ("FAILED", "not reproduced", "partly reproduced", "reproduced"):
        assert word in captured.out
    page = (tmp_path / "index.html").read_text()
    assert "fake good" in page and "data:image/png;base64," in page
    assert "failed to run" in page and "boom in broken" in page and "Traceback" in page
    assert "jaxlib" in page and "float64" in page
    assert "Rule: reproduced: = 1; partly: ≤ 3" in page  # each claim states its rule


def test_report_url_is_printed(fake_experiments, capsys, tmp_path):
    cli.main(["report", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"report: {(tmp_path / 'index.html').resolve().as_uri()}" in out
    assert "3 claims checked in 1 experiments: 1 reproduced, 1 partly reproduced, 1 not" in out


def test_empty_selection_is_an_error_not_everything(fake_experiments, capsys, tmp_path):
    for only in ("", " ", ",", " , "):
        assert cli.main(["report", "--only", only, "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "names no experiment" in err
    assert not (tmp_path / "index.html").exists()  # nothing ran, nothing overwritten


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"iterdiff {iterdiff.__version__}"


def test_progress_lines_without_a_terminal(fake_experiments, capsys, tmp_path):
    """Not on a terminal (a log, CI, a pipe) every experiment's start and end is one line."""
    cli.main(["report", "--out", str(tmp_path)])
    err = capsys.readouterr().err.splitlines()
    assert err.index("[1/2] good: running…") < err.index("[2/2] broken: running…")
    done = [line for line in err if line.startswith("[1/2] good: ") and " s, " in line]
    assert done == [f"[1/2] good: {done[0].split(': ')[1].split(' s')[0]} s, 1 reproduced, "
                    "1 partly reproduced, 1 not reproduced"]  # fmt: skip
    assert any(line.startswith("[2/2] broken: ") and "FAILED" in line for line in err)


def test_summary_wraps_and_never_cuts():
    lines = cli.summary_lines([_fake_result("good")], width=80)
    assert all(len(line) <= 80 for line in lines)
    text = " ".join(" ".join(lines).split())
    assert "…" not in text
    for word in set(LONG.split()):
        assert word in text
    assert "THE-END" in text  # the end of a long measured value is printed, not cut


def _run_python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(iterdiff.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["--version"], ["report", "--help"], ["report", "--only", "nope"],
     ["report", "--only", ""], ["report", "--list"], ["bogus"]],
    ids=lambda a: " ".join(a) or "''",
)  # fmt: skip
def test_help_and_mistakes_do_not_import_jax(argv):
    """Answering these needs no JAX (two seconds of import): `iterdiff --help` is instant."""
    run = _run_python(
        "import sys\n"
        "from iterdiff.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('JAX IMPORTED' if 'jax' in sys.modules else 'NO JAX', file=sys.stderr)\n"
    )
    assert run.stderr.strip().splitlines()[-1] == "NO JAX", run.stderr


def test_the_lazy_api_lists_every_name_twice_the_same():
    """iterdiff/__init__.py imports its public names on first use (_API) and lists them for
    static tools under TYPE_CHECKING: both lists must agree."""
    tree = ast.parse(pathlib.Path(iterdiff.__file__).read_text(encoding="utf-8"))
    block = next(n for n in tree.body if isinstance(n, ast.If))
    static = {
        alias.asname or alias.name: f".{node.module}" if node.module else ""
        for node in block.body
        for alias in node.names
    }
    assert static == iterdiff._API
    for name in iterdiff.__all__:  # and every name resolves
        assert getattr(iterdiff, name) is not None


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
