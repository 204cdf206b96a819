"""Published results on differentiating iterative algorithms, reproduced: one module per
experiment (the sources are cited in each module's SOURCE, from ``_sources``).

Each module defines ``TITLE``, ``SOURCE`` and ``run(size="demo", seed=0) -> Result`` (see
``_base``). ``EXPERIMENTS`` maps the names that ``iterdiff report --only`` accepts to modules,
imported on first use so that ``iterdiff report --list`` stays instant.
"""

import importlib

from .._extras import require
from ._base import SIZES as SIZES
from ._base import Claim as Claim
from ._base import Result as Result

# name -> module of iterdiff.experiments, in the order of the report.
EXPERIMENTS = {
    "rates": "rates",  # 1. forward–backward, Douglas–Rachford, ADMM: derivative rates
    "heavy_ball": "heavy_ball",  # 2. heavy ball vs gradient descent (NeurIPS 2022)
    "sinkhorn": "sinkhorn",  # 3. Sinkhorn iterates and derivatives, zero marginals
    "one_step": "one_step",  # 4. one-step vs implicit vs unrolled (interior point, Newton, GD)
    "ad_artefacts": "ad_artefacts",  # 5. relu'(0), J^imp ⊊ J^pb, kinks activated
    "finite_differences": "finite_differences",  # 6. finite differences vs AD
    "bilevel": "bilevel",  # 7. hypergradient descent, one-step vs implicit
    "trust": "trust",  # 8. estimated vs true derivative error on the above
}


def load(name: str):
    """The experiment module called ``name`` (a key of ``EXPERIMENTS``)."""
    if name not in EXPERIMENTS:
        known = ", ".join(EXPERIMENTS)
        raise KeyError(f"unknown experiment {name!r}; known: {known}.")
    require("demo", f"the experiment {name!r} (iterdiff demo, iterdiff report)")
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[name]}")
