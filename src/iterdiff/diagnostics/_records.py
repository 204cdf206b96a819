"""What a Solution records about how its derivative was made: the rule its mode used and the
record of a `DerivativeTrace` observer (read by the estimates and by the warnings)."""


def rule_used(sol):
    """The rule that gave the Solution's derivative: its mode, or the rule the mode chose
    (`Auto`: from ``sol.stats["auto"]``), by the mode's ``rule_used`` hook."""
    return sol.mode.rule_used(sol.stats)


def trace_record(sol) -> dict | None:
    """The record of a `DerivativeTrace` observer in ``sol.stats``, if one ran."""
    for value in sol.stats.values():
        if isinstance(value, dict) and "last_delta" in value and "derivative_rate" in value:
            return value
    return None
