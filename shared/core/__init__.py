"""The trading core: pure A-share domain logic with no I/O — ts_codes, money, orders and their state machine
(`domain`), and the exchange's rules and calendar (`market`) that the backtest engine, the paper broker and risk all
use. Imports nothing of `shared.research` or `shared.platform` (make lint checks it)."""
