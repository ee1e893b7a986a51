"""The engine's integer fees now live in `shared.core.market.fees` (the matching in shared.core needs them too)."""

from shared.core.market.fees import FenFees, round_half_up_ratio

__all__ = ["FenFees", "round_half_up_ratio"]
