"""`python -m posebench ...` (what multi-process launchers such as torchrun / accelerate launch run)."""

from posebench.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports it
    main()
