"""reposedm: the RePoseDM reference model (arXiv 2310.16074), built on diffusers and accelerate.

It depends on posebench (split manifests, keypoints, pose estimators); posebench never imports it.
The model, trainer and sampler arrive with the reference-model issue.
"""

from posebench._version import __version__

__all__ = ["__version__"]
