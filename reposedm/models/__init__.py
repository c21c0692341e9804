"""Networks of the reference model."""
