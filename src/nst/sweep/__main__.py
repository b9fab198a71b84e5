import sys

from ..commandline import exit_now
from . import main

try:
    code = main()
except KeyboardInterrupt:  # Ctrl-C before the sweep took the signal over (reading the config, planning)
    print("interrupted", file=sys.stderr)
    code = 130
exit_now(code)  # skips the interpreter's ~0.8 s teardown of torch and Lightning, as train.py does
