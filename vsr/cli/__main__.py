"""``python -m vsr.cli``: the same as ``vsr`` (and ``python -m vsr``)."""

from vsr.cli import main

if __name__ == "__main__":
    main()
