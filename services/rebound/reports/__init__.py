"""Return analytics per seller: what comes back, why, in what state, and what it earns again."""
