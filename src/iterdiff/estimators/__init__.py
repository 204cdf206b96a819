"""scikit-learn estimators whose regularisation is tuned by hypergradient descent.

from iterdiff.estimators import HyperLasso
model = HyperLasso(cv=5).fit(X, y)      # model.alpha_, model.coef_, model.history_
"""

from . import _requires as _requires  # first: names the extra if a dependency is missing
from ._base import HyperparameterTuner as HyperparameterTuner
from ._base import TuningError as TuningError
from ._linear import HyperElasticNet as HyperElasticNet
from ._linear import HyperLasso as HyperLasso
from ._linear import HyperWeightedLasso as HyperWeightedLasso
from ._logistic import HyperLogisticRegression as HyperLogisticRegression
