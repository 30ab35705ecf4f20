import sys

from saescope._dist import end_worker, launched_by_torchrun
from saescope.cli import main

code = main()
if launched_by_torchrun():
    end_worker(code)
sys.exit(code)
