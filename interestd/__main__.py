"""Entry point for `python -m interestd`."""

from interestd.cli import main

if __name__ == "__main__":
    main()
