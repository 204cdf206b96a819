"""Nonsmooth calculus for iterative algorithms: kink selections, conservative Jacobian sets,
set-valued fixed points and the heavy-ball counterexample.

Reference: Bolte, Pauwels & Vaiter, "Automatic differentiation of nonsmooth iterative
algorithms", NeurIPS 2022; Bolte & Pauwels, "Conservative set valued fields, automatic
differentiation, stochastic gradient methods and deep learning", Math. Prog. 2021.
See docs/nonsmooth.md.
"""

from ._kinks import abs as abs
from ._kinks import clip as clip
from ._kinks import maximum as maximum
from ._kinks import minimum as minimum
from ._kinks import negative_part as negative_part
from ._kinks import relu as relu
from ._kinks import sign as sign
