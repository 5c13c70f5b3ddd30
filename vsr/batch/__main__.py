"""``python -m vsr.batch INPUT... --out DIR`` (the same as ``vsr batch``)."""

from vsr.batch.cli import main

if __name__ == "__main__":
    main()
