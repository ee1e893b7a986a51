"""The execution service: accepts only risk-approved orders, runs them through a broker adapter and records
orders, trades and their events (transactional outbox)."""
