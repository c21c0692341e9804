"""Dataset layer: readers of the real on-disk formats, canonical names and pair keys, split manifests,
keypoint formats and frames, pose renderers, and the procedural synthetic people.

Nothing here imports the metrics, the evaluator or reposedm.
"""
