"""The publications and talks the experiments reproduce, cited as a reader would look them up."""

NONSMOOTH_AD_2022 = (
    "J. Bolte, E. Pauwels & S. Vaiter, “Automatic differentiation of nonsmooth iterative "
    "algorithms”, NeurIPS 2022"
)
ONE_STEP_2023 = (
    "J. Bolte, E. Pauwels & S. Vaiter, “One-step differentiation of iterative algorithms”, "
    "NeurIPS 2023"
)
SINKHORN_2023 = (
    "E. Pauwels & S. Vaiter, “The derivatives of Sinkhorn–Knopp converge”, SIAM J. Optim. 2023"
)
AD_MODEL_2020 = (
    "J. Bolte & E. Pauwels, “A mathematical model for automatic differentiation in machine "
    "learning”, NeurIPS 2020"
)
CONSERVATIVE_2021 = (
    "J. Bolte & E. Pauwels, “Conservative set valued fields, automatic differentiation, "
    "stochastic gradient methods and deep learning”, Math. Program. 2021"
)
VAITER_TALK_2023 = (
    "S. Vaiter, “(Automatic) Iterative Differentiation: some old (& new) results”, talk, "
    "Séminaire SPO, IHP, Paris, November 2023"
)
GRIEWANK_WALTHER_2008 = (
    "A. Griewank & A. Walther, “Evaluating Derivatives: Principles and Techniques of "
    "Algorithmic Differentiation”, SIAM 2008"
)
GILBERT_1992 = (
    "J. C. Gilbert, “Automatic differentiation and iterative processes”, Optim. Methods Softw. 1992"
)
