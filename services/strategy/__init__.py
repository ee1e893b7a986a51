"""The strategy service: which strategies are installed, the parameters each one takes, and the strategy instances
that put them to work on accounts."""
