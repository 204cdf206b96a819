"""The conformance grid: every mode × transform × wrapper cell, each with a fixed problem
structure (so one compiled program serves all of its examples) and an assigned map kind and
linear solver, chosen so that the CI run covers every cell, every kind and, for Implicit, every
linear solver in a forward-mode and in a reverse-mode cell.
"""

from typing import NamedTuple

from strategies import LeafSpec, ProblemSpec

MODES = ("implicit", "unrolled", "onestep", "truncated", "auto")
TRANSFORMS = ("jvp", "grad", "jacfwd", "jacrev", "hessian")
WRAPPERS = ("eager", "jit", "vmap")

# Implicit's solver per (wrapper, transform): each solver has a forward cell (jvp, jacfwd, or
# hessian, whose outer jvp runs the forward solve) and a reverse one (grad, jacrev, hessian).
IMPLICIT_SOLVER = {
    ("eager", "jvp"): "GMRES",
    ("eager", "grad"): "GMRES",
    ("eager", "jacfwd"): "BiCGStab",
    ("eager", "jacrev"): "LeastSquares",
    ("eager", "hessian"): "DenseLeastSquares",
    ("jit", "jvp"): "LU",
    ("jit", "grad"): "LU",
    ("jit", "jacfwd"): "Neumann",
    ("jit", "jacrev"): "BiCGStab",
    ("jit", "hessian"): "DenseLeastSquares",
    ("vmap", "jvp"): "CG",
    ("vmap", "grad"): "CG",
    ("vmap", "jacfwd"): "LeastSquares",
    ("vmap", "jacrev"): "Neumann",
    ("vmap", "hessian"): "GMRES",
}
KIND_CYCLE = ("tanh", "softplus", "prox", "affine", "gradstep", "cubic")


class Cell(NamedTuple):
    mode: str  # as `cells.make_mode` reads it
    transform: str
    wrapper: str
    spec: ProblemSpec

    @property
    def id(self) -> str:
        return f"{self.mode}-{self.transform}-{self.wrapper}-{self.spec.kind}"


def _masks(kind: str, x_mask, p_mask):
    n = len(x_mask)
    if kind == "cubic":
        x_mask = tuple(tuple(i == j for j in range(n)) for i in range(n))
    if kind == "gradstep":
        x_mask = tuple(
            tuple(i == j or x_mask[i][j] or x_mask[j][i] for j in range(n)) for i in range(n)
        )
    return x_mask, p_mask


def template(index: int, kind: str) -> ProblemSpec:
    """Two structures, alternating: (A) x = {"a": (2,), "b": ()} in float64, θ = ((2,), a
    Python float), leaf b independent of θ (the pattern of issue 28's failure 1); (B) x a list
    of a float32 (2,) and a float64 (3,) leaf, θ an equinox Module holding a dict, F an equinox
    Module holding a float32 parameter, and a 0-d array closed over; leaf 1 independent of θ's
    own leaf and, where the kind allows, of x."""
    if index % 2 == 0:
        x = {"a": LeafSpec((2,)), "b": LeafSpec(())}
        params = {
            "theta": (LeafSpec((2,)), LeafSpec((), kind="python")),
            "closure": None,
            "module": None,
        }
        x_mask = ((True, True), (True, True))
        p_mask = ((True, True), (False, False))
        return ProblemSpec(x, params, False, False, kind, *_masks(kind, x_mask, p_mask))
    x = [LeafSpec((2,), "float32"), LeafSpec((3,))]
    params = {
        "theta": {"w": LeafSpec((3,))},
        "closure": (LeafSpec((), kind="zero_d"),),
        "module": LeafSpec((2,), "float32"),
    }
    # parameter leaves in order: closure[0], module, theta["w"]
    x_mask = ((True, True), (False, True))
    p_mask = ((False, True, True), (True, True, False))
    return ProblemSpec(x, params, True, True, kind, *_masks(kind, x_mask, p_mask))


def _cells() -> list[Cell]:
    cells, i = [], 0
    for wrapper in WRAPPERS:
        for mode in MODES:
            for transform in TRANSFORMS:
                name = mode
                if mode == "implicit":
                    solver = IMPLICIT_SOLVER[(wrapper, transform)]
                    name = f"implicit:{solver}"
                    kind = "gradstep" if solver == "CG" else KIND_CYCLE[i % 5]
                elif mode == "onestep":
                    kind = "cubic"  # where OneStep is exact
                else:
                    kind = KIND_CYCLE[i % len(KIND_CYCLE)]
                    if mode == "truncated":
                        name = f"truncated:{1 + i % 3}"
                cells.append(Cell(name, transform, wrapper, template(i, kind)))
                i += 1
    return cells


CELLS = _cells()
