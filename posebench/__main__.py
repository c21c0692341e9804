"""`python -m posebench ...` (what multi-process launchers such as torchrun / accelerate launch run)."""

from posebench.cli import main

main()
