"""``python -m kdgat.cli``: the same as the ``kdgat`` command."""

import sys

from kdgat.cli import main

sys.exit(main())
