"""The inner loops experiments time. Pure Python here; a native module may follow."""
