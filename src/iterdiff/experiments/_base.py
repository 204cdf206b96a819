"""What every experiment returns: its claims (predicted vs measured), a figure and its data.

An experiment is a module of `iterdiff.experiments` with three names:

* ``TITLE``: one line, e.g. "Derivatives of forward–backward converge at the iterates' rate".
* ``SOURCE``: where the claim comes from, e.g. "seed 001 (slides 10–14); docs/theory.md §2". Name the
  seed file and the slide or paper section; never a path outside the repository.
* ``run(size="demo", seed=0) -> Result``: ``size`` is ``"tiny"`` (tests: a few seconds),
  ``"demo"`` (the ``iterdiff demo`` default: the whole demo must finish in about two minutes on
  two CPU cores) or ``"full"`` (the paper-scale sizes).

Experiments use only the public API (``import iterdiff as itd``) and return a ``Result``; they
never print (the command prints the summary) and never write files (the report does).
"""

from __future__ import annotations

import dataclasses
from typing import Any

SIZES = ("tiny", "demo", "full")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checked statement: what the source predicts and what this run measured.

    Attributes:
        text: the statement, e.g. "derivative error of ISTA decays at rate ρ".
        predicted: the predicted value as text (a number with its formula, or a relation such as
            "≤ 1e-10" or "diverges").
        measured: the measured value as text, formatted for the summary table.
        passed: whether the measurement agrees with the prediction (within the stated tolerance).
        note: an honest remark where they disagree or where the comparison needs a caveat.
    """

    text: str
    predicted: str
    measured: str
    passed: bool
    note: str = ""

    def __post_init__(self):
        # comparisons of NumPy/JAX scalars give numpy.bool_; the report wants a plain bool
        object.__setattr__(self, "passed", bool(self.passed))


@dataclasses.dataclass
class Result:
    """What an experiment returns.

    Attributes:
        name: the experiment's registry name.
        title, source: copied from the module.
        claims: the checked statements, in the order the report shows them.
        figure: a matplotlib ``Figure`` (or ``None`` when the experiment has no picture).
        data: the raw numbers behind the claims and the figure (arrays, floats), for tests.
        notes: paragraphs the report shows under the figure (setup, sizes, honest caveats).
        seconds: wall time of ``run`` (filled in by the runner).
        error: empty when the experiment ran; otherwise what went wrong (the runner fills it
            with the exception and a traceback summary when importing or running failed).
    """

    name: str
    title: str
    source: str
    claims: list[Claim]
    figure: Any = None
    data: dict = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    seconds: float = float("nan")
    error: str = ""

    @property
    def failed(self) -> bool:
        """True when the experiment could not be imported or raised."""
        return bool(self.error)

    @property
    def passed(self) -> bool:
        return not self.error and all(claim.passed for claim in self.claims)


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}.")
    return size
