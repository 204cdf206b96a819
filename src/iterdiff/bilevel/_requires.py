"""First import of iterdiff.bilevel: names the extra to install if a dependency is missing."""

from .._extras import require

require("bilevel", "iterdiff.bilevel")
