"""The inner loops experiments time: pure Python (pyloops) and the optional C module (_native)."""
