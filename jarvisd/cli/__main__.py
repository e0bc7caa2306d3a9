"""`python -m jarvisd.cli` == `jarvisctl`."""

import sys

from jarvisd.cli import main

sys.exit(main())
