"""Results files: the schema-versioned contract every evaluation writes and every board / gate reads.

This floor reads and compares results JSON; it never runs a model.
"""

from posebench.results.schema import SCHEMA_VERSION, read_results, write_results

__all__ = ["SCHEMA_VERSION", "read_results", "write_results"]
