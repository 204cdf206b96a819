"""Optional dependencies: the extra that provides each layer above the core, and a clear error
naming it when one of its packages is missing (the core needs jax, equinox and numpy only)."""

import importlib

# extra -> the modules it provides (import names)
EXTRAS = {
    "bilevel": ("optax", "tqdm"),
    "tuners": ("optax", "tqdm", "sklearn", "cloudpickle"),
    "demo": ("optax", "tqdm", "sklearn", "matplotlib"),
}
_DISTRIBUTION = {"sklearn": "scikit-learn"}


class MissingExtraError(ImportError):
    """A module of iterdiff needs a package of an extra that is not installed."""


def require(extra: str, what: str) -> None:
    """Raise `MissingExtraError` naming the extra if a package of ``extra`` cannot be imported.

    Arguments:
        extra: a key of ``EXTRAS``.
        what: the part of iterdiff that needs it, for the message.
    """
    missing = []
    for module in EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(_DISTRIBUTION.get(module, module))
    if missing:
        raise MissingExtraError(
            f"{what} needs {', '.join(missing)}, which iterdiff's '{extra}' extra installs: "
            f"pip install 'iterdiff[{extra}]' (from a checkout: pip install '.[{extra}]'). The "
            "core (fixed_point and the modes, root, argmin, implicit_solve, linear_solve, prox, "
            "nonsmooth, algorithms, diagnostics) needs none of it."
        )
