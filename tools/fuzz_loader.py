"""Fuzz the model-file loader (``fastnn.load``) with atheris (libFuzzer): no input may
crash it or raise anything but ValueError.  The mutators are tests/loader_fuzzing.py's.

    pip install atheris
    python tools/fuzz_loader.py                                  # until Ctrl-C
    python tools/fuzz_loader.py -max_total_time=600 -rss_limit_mb=4096
    python tools/fuzz_loader.py --random 20000                   # no atheris: seeded random

Input bytes choose a mutator (bytes / JSON header / .npy header) and its seed, or are
taken whole as a file, so libFuzzer explores both structured and raw inputs.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import loader_fuzzing as lf  # noqa: E402


def main() -> None:
    """``--random N`` or an atheris run with libFuzzer's arguments."""
    if len(sys.argv) > 2 and sys.argv[1] == "--random":
        print(lf.run_random(int(sys.argv[2])))
        return
    import atheris

    with atheris.instrument_imports():
        import fastnn  # noqa: F401
        import fastnn.io  # noqa: F401
    good = lf.seed_file()
    path = os.path.join(tempfile.mkdtemp(), "fuzz.fnn")

    def one_input(buf: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(buf)
        mode = fdp.ConsumeIntInRange(0, 3)
        if mode == 3:  # libFuzzer's own bytes, as a whole file
            data = fdp.ConsumeBytes(fdp.remaining_bytes())
        else:
            data = lf.MUTATORS[mode](good, random.Random(fdp.ConsumeInt(8)))
        lf.check(data, path)

    atheris.Setup([sys.argv[0], *sys.argv[1:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
