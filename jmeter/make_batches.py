#!/usr/bin/env python3
"""Build the batch corpora for POST /import/batch from payloads/events.tsv.

Writes payloads/batch-N.tsv for each N given (default 10 and 100): one line
per batch, `batchN-L TAB [element,element,...]`, where the elements are the
single-event templates taken round-robin from events.tsv, and element i's
`${eventId}` becomes `${eventId}-i`, so every event of a batch has its own
id and verify.py can check each one as its own record.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINES = 8  # distinct batches per corpus


def single_templates(path=HERE / "payloads" / "events.tsv"):
    """The single-event templates, in corpus order."""
    return [line.split("\t", 1)[1] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def element_templates(templates, kind):
    """The single-event templates of batch `kind` (batchN-L), in element order: verify.py
    rebuilds them this way instead of splitting the batch's text."""
    size, line = (int(n) for n in kind[len("batch"):].split("-"))
    return [templates[(line * size + i) % len(templates)] for i in range(size)]


def main(sizes):
    templates = single_templates()
    for size in sizes:
        out = []
        for line in range(LINES):
            kind = f"batch{size}-{line}"
            elements = [t.replace("${eventId}", "${eventId}-" + str(i))
                        for i, t in enumerate(element_templates(templates, kind))]
            out.append(f"{kind}\t[" + ",".join(elements) + "]")
        path = HERE / "payloads" / f"batch-{size}.tsv"
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main([int(n) for n in sys.argv[1:]] or [10, 100])
