"""Strategies the strategy and backtest services load: the examples that ship with LiangHua, and where users
put their own (one module per strategy; see shared/research/strategy/base.py for the API)."""
