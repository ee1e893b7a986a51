"""Programs that run beside a broker's terminal and connect out to the platform (bridge/qmt: MiniQMT)."""
