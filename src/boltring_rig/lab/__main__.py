"""``python -m boltring_rig.lab COMMAND``: the ``boltring lab`` CLI on its own."""

import sys

from .cli import main

sys.exit(main())
