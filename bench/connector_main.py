"""`connector` for an in-process profiler: `connectors.cli.main` returning normally.

The console entry point leaves with `os._exit` (so native client threads cannot abort a
clean exit), which would also skip pyinstrument's report; the run itself is the same.
"""

import sys

from connectors.cli import main

sys.exit(main())
