"""The frozen bundle's entry script: `app.main:main`, the same as the `watchgate-desktop` console
script. A launcher rather than app/main.py itself, so that `app.main` is imported once, under its
own name, as in a dev install."""

import sys

from app.main import main

sys.exit(main())
