"""``python -m vsr.batch INPUT... --out DIR`` (the same as ``vsr batch``)."""

from vsr.cli.batch import main

if __name__ == "__main__":
    main()
