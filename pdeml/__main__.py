"""``python -m pdeml ...`` (and ``torchrun -m pdeml train ...``): the ``pdeml`` command."""
import sys

from .cli import main

sys.exit(main())
