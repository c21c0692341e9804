"""Small helpers shared by every floor of posebench (no imports of our own above this package)."""
