"""The prox of an indicator function: the projection onto its set."""

from collections.abc import Callable

from ._common import check_nonnegative


def prox_from_projection(projection: Callable) -> Callable:
    """The prox of ι_C from the projection onto C: prox_{γι_C} = proj_C for every step γ ≥ 0.

    Arguments:
        projection: ``projection(x, *args, **kwargs) -> y``, e.g. `project_l1_ball`.

    Returns:
        The function ``prox(x, step=1.0, *args, **kwargs)`` that returns the projection
        (``step`` must be ≥ 0 and is otherwise ignored, so that the prox has the signature of
        the other prox operators, e.g. in ``F(x, θ) = prox(x − γ∇f(x), γ)``). Kink selections
        are the projection's (pass ``at_kink`` through ``kwargs``).
    """
    if not callable(projection):
        raise TypeError(
            "prox_from_projection: projection must be a function x -> proj_C(x), got "
            f"{type(projection).__name__}."
        )

    def prox(x, step=1.0, *args, **kwargs):
        check_nonnegative("prox_from_projection", "step", step)
        return projection(x, *args, **kwargs)

    prox.__doc__ = f"prox of the indicator of the set of {getattr(projection, '__name__', 'C')}."
    return prox
