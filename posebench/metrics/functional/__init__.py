"""Pure metric functions on tensors / arrays (no state, no IO)."""
