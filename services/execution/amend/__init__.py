"""Amending an order as cancel-replace (docs/order-path.md "Amending an order"): `rules.py` the pure decisions,
`store.py` the table and its version-checked moves, `service.py` the cancel, its confirmation and the replacement
through risk, `api.py` the routes."""
