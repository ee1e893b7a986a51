"""The notify service: alerts that reach people. It turns Alertmanager's webhook into DingTalk and WeCom robot
messages (merged, rate-limited, retried) and the platform's business events into Alertmanager alerts
(docs/operations.md)."""
