"""The interior-point slow spot: reverse mode through a dense KKT solve.

Compares, for a random n×n system (n = 900 is the KKT size of the QP with n = 400), the
factor-and-solve x = M⁻¹b with (a) reverse mode through `jax.scipy.linalg.lu_factor` and
`lu_solve`, as the interior-point map did before, and (b) iterdiff's factored solve, whose
derivative reuses the factors (one transposed solve). Ratios: (solve + VJP) / solve, paired.

    python -m benchmarks kkt
"""

import jax
import jax.numpy as jnp
import numpy as np

from iterdiff.internal import lu_solver, paired_ratio


def run(args, sizes=None):
    sizes = sizes or ((20, 50) if args.quick else (225, 450, 900))
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        M = jnp.asarray(rng.normal(size=(n, n)) + np.sqrt(n) * np.eye(n))
        b, c = jnp.asarray(rng.normal(size=n)), jnp.asarray(rng.normal(size=n))

        def through_factors(M, b, c=c):
            return c @ jax.scipy.linalg.lu_solve(jax.scipy.linalg.lu_factor(M), b)

        def factored(M, b, c=c):
            return c @ lu_solver(M)(b)

        solve = jax.jit(through_factors)
        row = dict(n=n)
        for name, fn in (("lu_factor VJP", through_factors), ("lu_solver VJP", factored)):
            vjp = jax.jit(jax.value_and_grad(fn, argnums=(0, 1)))
            row[name] = paired_ratio(vjp, solve, M, b, repeats=args.repeats)
        rows.append(row)
        print(
            f"  n={n}: (solve + VJP)/solve — through lu_factor {row['lu_factor VJP']:.2f}, "
            f"factored {row['lu_solver VJP']:.2f}",
            flush=True,
        )
    return rows
