"""One rank of a data-parallel trial: ``python -m autoaccel.plugins.data_parallel FOLDER`` (run_ranks starts one per
rank). A package runs its ``__main__`` module under ``-m``, never its ``__init__``'s ``if __name__ == "__main__"``."""

import os
import sys

from autoaccel.plugins.data_parallel import rank_main

rank_main(sys.argv[1])
# Leave without the interpreter's teardown: destroying torch's static objects while one of gloo's threads is
# still joinable aborts the process ("terminate called without an active exception") after the work is done.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
