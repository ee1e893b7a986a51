"""Risk's hot state of an account: what it holds, may sell and may spend, built from execution's events."""
