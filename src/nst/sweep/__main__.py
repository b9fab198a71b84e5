import sys

from . import main

try:
    sys.exit(main())
except KeyboardInterrupt:  # Ctrl-C before the sweep took the signal over (reading the config, planning)
    print("interrupted", file=sys.stderr)
    sys.exit(130)
