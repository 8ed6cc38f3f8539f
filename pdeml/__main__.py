"""``python -m pdeml ...`` (and ``torchrun -m pdeml train ...``): the ``pdeml`` command."""

import os
import sys

from .cli import main
from .distributed import World

rc = main()
if World.from_env(os.environ).active:
    # A rank of a torchrun job that has finished (its process group already left) ends here
    # without the interpreter's teardown: a collective library's thread destroyed there could
    # abort the process ("terminate called without an active exception", seen once in 20 runs),
    # and torchrun would then fail a job whose files were all written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
sys.exit(rc)
