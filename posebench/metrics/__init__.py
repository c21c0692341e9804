"""Image and pose metrics: pure functions (`functional/`), feature networks (`features.py`, `lpips_net.py`)
and small stateful accumulators; one streaming evaluator runs them in a single pass over the images.

This floor never imports the evaluator or reposedm.
"""
