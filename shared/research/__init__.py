"""Research: the backtest engine and optimisation (`engine`), the strategy API and indicators (`strategy`) and
backtest reports (`report`). Pure: builds on `shared.core`, does no I/O and imports nothing of `shared.platform`
(make lint checks it)."""
