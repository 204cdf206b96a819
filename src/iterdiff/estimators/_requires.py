"""First import of iterdiff.estimators: names the extra to install if a dependency is missing."""

from .._extras import require

require("tuners", "iterdiff.estimators")
