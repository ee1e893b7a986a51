"""The strategy service: which strategies are installed, and the parameters each one takes."""
