"""How a measurement is taken: counters, the repetition protocol, statistics, progress."""
