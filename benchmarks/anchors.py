"""The anchors: jaxopt, optimistix (with lineax) and ott-jax on the same fixed-point maps.

Installed by the ``bench`` extra and imported only here, lazily: a missing library drops its
rows. Each runs the same F as iterdiff (jaxopt's and optimistix's fixed-point iterations are
Picard iterations like iterdiff's default solver; ott-jax runs its own Sinkhorn on the same
points, cost and ε). Stopping rules, as set:

* jaxopt ``FixedPointIteration``: stops when ‖F(x) − x‖₂ ≤ tol (absolute). "defaults": tol =
  1e-5 and the implicit linear system by normal-equation CG (its default, tol 1e-5); "tight":
  tol and the CG tolerance at the benchmark's tolerance. ``maxiter`` is raised to the problem's
  max_steps (the default, 100, stops most of these problems early); with ``unroll`` jaxopt runs
  and stores all ``maxiter`` steps, so there maxiter = 1.1·K + 10, K the steps the hand-written
  loop needs at the benchmark's tolerance.
* optimistix ``FixedPointIteration``: stops when max_i |Δx_i|/(atol + rtol|x_i|) < 1; it has no
  default tolerance: "defaults" uses rtol = atol = 1e-8 with the default ``ImplicitAdjoint()``
  (lineax ``AutoLinearSolver``: a dense LU of the materialised Jacobian); "tight" uses the
  benchmark's tolerance with ``ImplicitAdjoint(lineax.GMRES)``.
* ott-jax ``Sinkhorn``: stops when the marginal error ‖P1 − a‖₁ < threshold, checked every 10
  iterations; "defaults": threshold 1e-3 and ``ImplicitDiff()``; "tight": threshold at the
  benchmark's tolerance.
"""

import functools
import importlib.util

from .methods import Method, readout_loss, steps_needed


def available(name):
    return importlib.util.find_spec(name) is not None


# --------------------------------------------------------------------------- jaxopt


def jaxopt_fixed_point(tol=None, unroll=False):
    def build(problem, bench_tol):
        import jaxopt

        kwargs = {}
        if tol is None:  # tight: the benchmark's tolerance, also in the implicit solve
            kwargs["tol"] = bench_tol
            kwargs["implicit_diff_solve"] = functools.partial(
                jaxopt.linear_solve.solve_normal_cg, tol=bench_tol
            )
        maxiter = int(1.1 * steps_needed(problem, bench_tol)) + 10 if unroll else problem.max_steps
        solver = jaxopt.FixedPointIteration(
            fixed_point_fun=problem.F,
            maxiter=maxiter,
            implicit_diff=not unroll,
            **kwargs,
        )

        def solve_state(theta):
            x, state = solver.run(problem.x0, theta)
            return x, state.iter_num

        return readout_loss(problem, solve_state)

    return build


# --------------------------------------------------------------------------- optimistix


def optimistix_fixed_point(adjoint, defaults):
    def build(problem, bench_tol):
        import lineax as lx
        import optimistix as optx

        tol = 1e-8 if defaults else bench_tol
        adjoints = {
            "implicit": optx.ImplicitAdjoint(),
            "implicit-gmres": optx.ImplicitAdjoint(
                lx.GMRES(rtol=bench_tol, atol=bench_tol, restart=50)
            ),
            "checkpoint": optx.RecursiveCheckpointAdjoint(),
        }

        def solve_state(theta):
            sol = optx.fixed_point(
                lambda y, args: problem.F(y, args),
                optx.FixedPointIteration(rtol=tol, atol=tol),
                problem.x0,
                theta,
                max_steps=problem.max_steps,
                adjoint=adjoints[adjoint],
            )
            return sol.value, sol.stats["num_steps"]

        return readout_loss(problem, solve_state)

    return build


# --------------------------------------------------------------------------- ott-jax


def ott_sinkhorn(defaults=True, implicit=True):
    def build(problem, bench_tol):
        from ott.geometry import pointcloud
        from ott.problems.linear import linear_problem
        from ott.solvers.linear import implicit_differentiation, sinkhorn

        e = problem.extras
        solver = sinkhorn.Sinkhorn(
            threshold=1e-3 if defaults else bench_tol,
            max_iterations=problem.max_steps,
            implicit_diff=implicit_differentiation.ImplicitDiff() if implicit else None,
        )

        def solve(theta):
            geom = pointcloud.PointCloud(
                e["xs"], e["ys"] + theta * e["shift"], epsilon=e["epsilon"]
            )
            out = solver(linear_problem.LinearProblem(geom, e["a"], e["b"]))
            return out.matrix, out.n_iters

        def loss(theta):
            P, _ = solve(theta)
            return problem.outer(P, theta)

        return solve, loss

    return build


def anchor_methods():
    methods = []
    if available("jaxopt"):
        methods += [
            Method("jaxopt implicit (defaults)", "jaxopt", jaxopt_fixed_point(tol=1e-5)),
            Method("jaxopt implicit (tight)", "jaxopt", jaxopt_fixed_point()),
            Method("jaxopt unroll (tight)", "jaxopt", jaxopt_fixed_point(unroll=True)),
        ]
    if available("optimistix") and available("lineax"):
        methods += [
            Method(
                "optimistix ImplicitAdjoint (defaults)",
                "optimistix",
                optimistix_fixed_point("implicit", True),
            ),
            Method(
                "optimistix ImplicitAdjoint+GMRES (tight)",
                "optimistix",
                optimistix_fixed_point("implicit-gmres", False),
            ),
            Method(
                "optimistix RecursiveCheckpointAdjoint (tight)",
                "optimistix",
                optimistix_fixed_point("checkpoint", False),
            ),
        ]
    if available("ott"):
        sinkhorn_only = ("sinkhorn",)
        methods += [
            Method("ott-jax implicit (defaults)", "ott-jax", ott_sinkhorn(), sinkhorn_only),
            Method("ott-jax implicit (tight)", "ott-jax", ott_sinkhorn(False), sinkhorn_only),
            Method(
                "ott-jax unrolled (tight)", "ott-jax", ott_sinkhorn(False, False), sinkhorn_only
            ),
        ]
    return methods
