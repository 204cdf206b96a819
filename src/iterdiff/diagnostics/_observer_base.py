"""The base class of the diagnostics observers (the core's observer interface)."""

import equinox as eqx

# TODO(trust): replace by iterdiff.AbstractObserver once the core's observers land on main.
ObserverBase = eqx.Module
