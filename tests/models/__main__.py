"""Generate every test model ahead of the tests and print where each is, and how long it took:

    .venv/bin/python tests/models
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models import MODELS, tiny_model, tiny_sd_set  # noqa: E402


def main() -> None:
    jobs: dict[str, Callable[[], Path]] = {name: partial(tiny_model, name) for name in MODELS}
    jobs["sd"] = tiny_sd_set
    for get in jobs.values():
        t0 = time.perf_counter()
        path = get()
        print(f"{time.perf_counter() - t0:6.2f} s  {path}")


if __name__ == "__main__":
    main()
