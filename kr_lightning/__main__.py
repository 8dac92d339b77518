"""``python -m kr_lightning``: the command-line entry point."""

from kr_lightning.cli import main

if __name__ == "__main__":
    main()
