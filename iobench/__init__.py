"""iobench: measure what IO really costs on the machine it runs on."""

__version__ = "0.1.0"

#: Version of the on-disk result format (results.csv columns + meta.json keys).
SCHEMA_VERSION = 1
