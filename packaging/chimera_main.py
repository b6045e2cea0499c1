"""Entry point of the frozen executable: the same CLI as the `chimera` console script."""

import multiprocessing
import sys

from chimera.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
