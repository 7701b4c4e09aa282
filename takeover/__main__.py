"""``python -m takeover`` runs the command line, e.g. from a source checkout."""

from takeover.cli import main

if __name__ == "__main__":
    main()
