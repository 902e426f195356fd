"""``python -m fot_edu``: the command line (``fot_edu.cli``)."""
import sys

from fot_edu.cli.parser import main

if __name__ == "__main__":
    sys.exit(main())
