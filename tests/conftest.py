"""Property tests draw the same examples on every run (CI included), so a result never depends on
the luck of the draw; `HYPOTHESIS_PROFILE=explore pytest` draws fresh ones."""

import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
