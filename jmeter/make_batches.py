#!/usr/bin/env python3
"""Build the batch corpora from the single-event ones.

For POST /import/batch, payloads/batch-N.tsv (N: 10 and 100), from
events.tsv: one line per batch, `batchN-L TAB [element,element,...]`.
For the analytics SDKs' protocols, payloads/<protocol>-N.tsv, each batch in
its protocol's envelope, as the SDKs send them:

  segment-100.tsv   POST /v1/batch  {"batch":[...],"sentAt":...}, from events.tsv
                    (already Segment's event shape)
  posthog-100.tsv   POST /batch/    {"api_key":...,"batch":[...],"sent_at":...}, from posthog.tsv
  snowplow-10.tsv   POST /com.snowplowanalytics.snowplow/tp2  payload_data, from snowplow.tsv

The elements are the single-event templates taken round-robin, and element
i's `${eventId}` becomes `${eventId}-i`, so every event of a batch has its own
id and verify.py can check each one as its own record.
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LINES = 8  # distinct batches per corpus
NOW = "${__time(yyyy-MM-dd'T'HH:mm:ss.SSSXXX,)}"
# A batch kind: its corpus prefix, events per batch, line.
KIND = re.compile(r"^(batch|segment|posthog|snowplow)(\d+)-(\d+)$")
# Per prefix: the single-event corpus, and the envelope around the elements (at @EVENTS@).
CORPORA = {
    "batch": ("events.tsv", "[@EVENTS@]"),
    "segment": ("events.tsv", '{"batch":[@EVENTS@],"sentAt":"' + NOW + '"}'),
    "posthog": ("posthog.tsv", '{"api_key":"phc_jmeter","batch":[@EVENTS@],"sent_at":"' + NOW + '"}'),
    "snowplow": ("snowplow.tsv",
                 '{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4","data":[@EVENTS@]}'),
}
# What `make_batches.py` with no arguments writes: (prefix, events per batch).
DEFAULT = [("batch", 10), ("batch", 100), ("segment", 100), ("posthog", 100), ("snowplow", 10)]


def single_templates(path=HERE / "payloads" / "events.tsv"):
    """The single-event templates, in corpus order."""
    return [line.split("\t", 1)[1] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def parse_kind(kind):
    """(prefix, size, line) of a batch kind, or None for a single-event kind."""
    m = KIND.match(kind)
    return m and (m.group(1), int(m.group(2)), int(m.group(3)))


def element_templates(kind):
    """The single-event templates of batch `kind` (e.g. batch10-3, segment100-0), in element
    order: verify.py rebuilds them this way instead of splitting the batch's text."""
    prefix, size, line = parse_kind(kind)
    templates = single_templates(HERE / "payloads" / CORPORA[prefix][0])
    return [templates[(line * size + i) % len(templates)] for i in range(size)]


def main(batches):
    for prefix, size in batches:
        envelope = CORPORA[prefix][1]
        out = []
        for line in range(LINES):
            kind = f"{prefix}{size}-{line}"
            elements = [t.replace("${eventId}", "${eventId}-" + str(i)) for i, t in enumerate(element_templates(kind))]
            out.append(f"{kind}\t" + envelope.replace("@EVENTS@", ",".join(elements)))
        path = HERE / "payloads" / f"{prefix}-{size}.tsv"
        path.write_text("\n".join(out) + "\n", encoding="utf-8")
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    args = [arg.rsplit("-", 1) if "-" in arg else ("batch", arg) for arg in sys.argv[1:]]
    main([(prefix, int(size)) for prefix, size in args] or DEFAULT)
