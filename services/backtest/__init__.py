"""The backtest service: accepts backtest requests, queues them for the worker, and serves their results."""
