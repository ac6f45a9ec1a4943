"""``python -m polyrec_cli <command>``: the same as the ``polyrec`` command (worker subprocesses start so)."""

import sys

from polyrec_cli.main import main

sys.exit(main())
