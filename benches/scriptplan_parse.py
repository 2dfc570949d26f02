"""Times ScriptPlan's parser on the ScriptPlan-dialect files of the corpus.

The counterpart of the `parse/scriptplan_dialect_*` case of `benches/parse.rs`: the same files,
parsed one after the other per iteration, with `ProjectFileParser().parse(text, schedule=False)`.

    python3 benches/scriptplan_parse.py [SECONDS]   # with scriptplan==0.10.2 installed
"""

import glob
import os
import statistics
import sys
import time

from scriptplan.parser.tjp_parser import ProjectFileParser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files():
    names = glob.glob(os.path.join(ROOT, "tests/corpus/scriptplan-tests/*.tjp"))
    names.append(os.path.join(ROOT, "tests/corpus/adapted/Vacation.scriptplan.tjp"))
    return sorted(names)


def main():
    texts = [open(name, encoding="utf-8").read() for name in files()]
    for text in texts:
        ProjectFileParser().parse(text, schedule=False)
    samples = []
    deadline = time.perf_counter() + float(sys.argv[1] if len(sys.argv) > 1 else 10)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for text in texts:
            ProjectFileParser().parse(text, schedule=False)
        samples.append(time.perf_counter() - start)
    print(
        f"scriptplan 0.10.2, {len(texts)} files, {sum(map(len, texts))} bytes: "
        f"median {statistics.median(samples) * 1e3:.3f} ms, mean {statistics.mean(samples) * 1e3:.3f} ms "
        f"over {len(samples)} iterations"
    )


if __name__ == "__main__":
    main()
