"""Orchestration: the streaming evaluator (`posebench eval`, `posebench.evaluate`), its targets adapters (image
pairs, Human-Art poses, two plain folders), the regression gate, the demo and the trivial baselines.

The top floor: it chains datasets, metrics and results; nothing in posebench below it imports it.
"""
