"""What every experiment returns: its claims (predicted vs measured, a verdict and the rule that
gave it), a figure and its data.

An experiment is a module of `iterdiff.experiments` with three names:

* ``TITLE``: one line, e.g. "Derivatives of forward–backward converge at the iterates' rate".
* ``SOURCE``: where the claims come from, cited for a reader: authors, title, venue and year (the
  constants of ``_sources``), and the section of the documentation (docs/theory.md §N).
* ``run(size="demo", seed=0) -> Result``: ``size`` is ``"tiny"`` (tests: a few seconds),
  ``"demo"`` (the ``iterdiff demo`` default: the whole demo must finish in about two minutes on
  two CPU cores) or ``"full"`` (the paper-scale sizes).

Experiments use only the public API (``import iterdiff as itd``) and return a ``Result``; they
never print (the command prints the summary) and never write files (the report does).

Verdicts have three tiers, decided by a rule stated with each claim (`Claim.rule`):

* **reproduced**: the measurement agrees with the source's prediction, quantitatively;
* **partly reproduced**: the qualitative statement holds but a number misses the source's range
  (e.g. one-step is the cheapest derivative, but costs more than the paper's 1.01–1.04×);
* **not reproduced**: the statement itself fails.

The rules are fixed before looking at a run; a claim without a meaningful middle ground (an
identity, an eigenvalue) has no partial tier. Timing claims use the median over repeats and
report the spread.
"""

from __future__ import annotations

import dataclasses
from typing import Any

SIZES = ("tiny", "demo", "full")

REPRODUCED = "reproduced"
PARTLY = "partly reproduced"
NOT_REPRODUCED = "not reproduced"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED)


def grade(reproduced, partly=False) -> str:
    """The verdict of a claim whose rule says: ``reproduced`` if the first condition holds,
    else ``partly reproduced`` if the second does, else ``not reproduced``."""
    if bool(reproduced):
        return REPRODUCED
    return PARTLY if bool(partly) else NOT_REPRODUCED


@dataclasses.dataclass(frozen=True)
class Claim:
    """One checked statement: what the source predicts, what this run measured, and the verdict.

    Attributes:
        text: the statement, e.g. "derivative error of ISTA decays at rate ρ".
        predicted: the predicted value as text (a number with its formula, or a relation such as
            "≤ 1e-10" or "diverges").
        measured: the measured value as text, formatted for the summary table.
        verdict: one of `VERDICTS` ("reproduced", "partly reproduced", "not reproduced"),
            usually computed by `grade`.
        rule: how the verdict was decided, in words, e.g. "reproduced: exponent within 10 %;
            partly: within 25 %". Shown in the report next to the verdict.
        note: an honest remark where the measurement falls short or needs a caveat.
    """

    text: str
    predicted: str
    measured: str
    verdict: str
    rule: str
    note: str = ""

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}.")
        if not self.rule:
            raise ValueError(f"claim {self.text!r}: state the rule that decides its verdict.")

    @property
    def passed(self) -> bool:
        """True when the claim is fully reproduced."""
        return self.verdict == REPRODUCED


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
        """True when the experiment ran and every claim is fully reproduced."""
        return not self.error and all(claim.passed for claim in self.claims)

    def count(self, verdict: str) -> int:
        """How many claims have this verdict."""
        return sum(claim.verdict == verdict for claim in self.claims)


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}.")
    return size
