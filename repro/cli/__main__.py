"""``python -m repro.cli``: the same front door as the ``repro-train`` console script."""

from repro.cli import main

if __name__ == "__main__":
    main()
