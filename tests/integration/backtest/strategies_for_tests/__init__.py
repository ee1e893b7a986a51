"""Strategies for the backtest tests, importable by worker processes (LH_STRATEGY_PACKAGES)."""
