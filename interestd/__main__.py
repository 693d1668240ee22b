"""Entry point for `python -m interestd`."""

from interestd.cli import entry

if __name__ == "__main__":
    entry()
