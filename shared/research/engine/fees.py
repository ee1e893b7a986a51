"""The integer fees live in `shared.core.market.fees` (the matching in shared.core uses them); this name stays for
the tests that import it from the engine."""

from shared.core.market.fees import FenFees, round_half_up_ratio

__all__ = ["FenFees", "round_half_up_ratio"]
