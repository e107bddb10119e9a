#!/usr/bin/env python3
"""Check a JMeter run against what reached the stream.

Every sample in the .jtl files that got a 200 carries the event id it sent
(the eventId column, from clickstream.properties). A batch sample (a kind
from payloads/batch-N.tsv, made by make_batches.py) sent N events with the
ids `<eventId>-0` .. `<eventId>-(N-1)`, and each must be its own record. This reads the records
back, from the gateway's file sink (--file), a Kinesis stream or emulator
(--stream, needs boto3) or a Kafka topic (--kafka, needs confluent-kafka),
and checks that each such event is there
with exactly the bytes the plan sent: its corpus template with the event id
put in and the other ${...} fields (timestamps, thread numbers) matched as
any string value.

Prints the ids missing or different, and a last line
`verify: N passed, M failed`, where failed counts the samples that did not
get a 200 plus the events missing or different. Exits 1 when M > 0 or N == 0.
"""

import argparse
import csv
import re
import sys
from collections import Counter
from pathlib import Path

from harness import filesink, kafka, kinesis, pubsub
from make_batches import element_templates, parse_kind

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{[^}]*\}")
# Where each protocol's event carries its id: Segment, PostHog, Snowplow.
MESSAGE_ID = re.compile(rb'"(?:messageId|uuid|eid)":"([^"]*)"')


def load_patterns(paths):
    """kind -> the patterns of its events (kind TAB template), the event id captured: one for a
    single-event kind, one per element for a batch kind (rebuilt from the single-event corpus
    the way make_batches.py built it)."""
    patterns = {}
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                kind, template = line.split("\t", 1)
                batch = parse_kind(kind)
                if batch:
                    # An SDK protocol's record is the event plus the gateway's fields
                    # appended: its pattern is the template up to its closing brace.
                    sdk = batch[0] != "batch"
                    patterns[kind] = [compile_template(e[:-1] if sdk else e, str(i), sdk)
                                      for i, e in enumerate(element_templates(kind))]
                else:
                    patterns[kind] = [compile_template(template)]
    return patterns


def compile_template(template, suffix=None, enriched=False):
    """${eventId} becomes the group `id` (later ones must repeat it), followed by `-suffix` for a
    batch element; any other ${...} any string value. `enriched`: the template without its
    closing brace, followed by the fields the gateway appends (`_gateway` among them)."""
    parts, pos, seen_id = [], 0, False
    tail = "" if suffix is None else re.escape("-" + suffix)
    for m in PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos:m.start()]))
        if m.group() == "${eventId}":
            parts.append(("(?P=id)" if seen_id else '(?P<id>[^"]*)') + tail)
            seen_id = True
        else:
            parts.append('[^"]*')
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    if enriched:
        parts.append(r',".*"_gateway":\{.*\}')
    return re.compile("".join(parts), re.DOTALL)


def matches(pattern, event_id, body):
    m = pattern.fullmatch(body)
    return m is not None and m.group("id") == event_id


def read_samples(jtls):
    """(ids that got a 200 -> kind, Counter of why the others failed, earliest timestamp in ms)."""
    ok, failed, first_ms, kinds = {}, Counter(), None, {}
    for jtl in jtls:
        with open(jtl, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if "eventId" not in row:
                    sys.exit(f"{jtl}: no eventId column; run the plan with -q jmeter/clickstream.properties")
                ts = int(row["timeStamp"])
                first_ms = ts if first_ms is None else min(first_ms, ts)
                if row["responseCode"] == "200" and row["success"] == "true":
                    kind = row.get("kind", "")
                    ok[row["eventId"]] = kinds.setdefault(kind, kind)  # one string per kind: millions of rows
                else:
                    reason = f"{row['responseCode']} {row['responseMessage']}: {row.get('failureMessage', '')}"
                    failed[" ".join(reason.split())] += 1
    return ok, failed, first_ms


def records_from_file(path):
    """Every record's data in the gateway's file sink."""
    return (data for _, _, data in filesink.read(path))


def records_from_stream(name, endpoint_url, region, since_ms, deadline_s):
    """Every record's data in every shard from since_ms on, until each is caught up or the deadline passes."""
    import boto3

    client = boto3.client("kinesis", endpoint_url=endpoint_url, region_name=region)
    return kinesis.read_since(client, name, since_ms, deadline_s)


def records_from_kafka(where, deadline_s):
    """Every message of every partition of `bootstrap/topic`."""
    bootstrap, _, topic = where.rpartition("/")
    return (value for _, _, _, value in kafka.read_topic(bootstrap, topic, deadline_s))


def records_from_pubsub(where, deadline_s):
    """Every message of a Pub/Sub emulator's subscription, `host:port/projects/P/subscriptions/S`."""
    host, _, subscription = where.partition("/")
    return (data for data, _ in pubsub.pull(host, subscription, deadline_s=deadline_s))


def expected_events(ok, patterns):
    """Every event id the 200'd samples sent: the sample's own, or one per batch element."""
    for sample_id, kind in ok.items():
        count = len(patterns.get(kind, [None]))
        if parse_kind(kind):
            yield from (f"{sample_id}-{i}" for i in range(count))
        else:
            yield sample_id


def check(records, ok, patterns):
    """event id -> whether a record carried it with the bytes sent, for the expected ids found.

    Checked as the records stream by, so memory holds ids, never bodies.
    A record without one of our ids is another producer's, and skipped."""
    seen = {}
    for data in records:
        m = MESSAGE_ID.search(data)
        event_id = m and m.group(1).decode("ascii", "replace")
        if not event_id or seen.get(event_id):
            continue
        sample_id, index = event_id, 0
        if event_id not in ok:
            sample_id, _, suffix = event_id.rpartition("-")
            if sample_id not in ok or not parse_kind(ok[sample_id]) or not suffix.isdigit():
                continue
            index = int(suffix)
        kind_patterns = patterns.get(ok[sample_id])
        if kind_patterns is None:
            seen[event_id] = True
        elif index < len(kind_patterns):
            seen[event_id] = matches(kind_patterns[index], sample_id, data.decode("utf-8", "replace"))
    return seen


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("jtl", nargs="+", help=".jtl files (CSV with the eventId column)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", help="the gateway's file sink (FILE_SINK_PATH)")
    source.add_argument("--stream", help="a Kinesis stream name")
    source.add_argument("--kafka", help="BOOTSTRAP/TOPIC: a Kafka topic, e.g. 127.0.0.1:9092/clicks")
    source.add_argument("--pubsub", help="HOST:PORT/projects/P/subscriptions/S: a Pub/Sub emulator's subscription")
    parser.add_argument("--endpoint-url", help="Kinesis endpoint (an emulator); default: AWS")
    parser.add_argument("--region", default=None, help="AWS region (default: from the AWS environment)")
    parser.add_argument("--payloads", action="append",
                        help="corpus files (default: payloads/events.tsv and every payloads/batch-*.tsv)")
    parser.add_argument("--deadline", type=float, default=300, help="seconds to spend reading a stream (300)")
    args = parser.parse_args()

    payloads = args.payloads or [
        HERE / "payloads" / "events.tsv",
        *sorted(p for p in (HERE / "payloads").glob("*-*.tsv") if parse_kind(p.stem.replace("-", "") + "-0")),
    ]
    patterns = load_patterns(payloads)
    ok, failed, first_ms = read_samples(args.jtl)
    if args.file:
        records = records_from_file(args.file)
    elif args.kafka:
        records = records_from_kafka(args.kafka, args.deadline)
    elif args.pubsub:
        records = records_from_pubsub(args.pubsub, args.deadline)
    else:
        records = records_from_stream(args.stream, args.endpoint_url, args.region, first_ms or 0, args.deadline)
    seen = check(records, ok, patterns)
    expected = list(expected_events(ok, patterns))
    missing = [event_id for event_id in expected if event_id not in seen]
    different = [event_id for event_id, same in seen.items() if not same]

    passed = len(expected) - len(missing) - len(different)
    print(f"verify: {len(ok) + failed.total()} samples, {len(ok)} answered 200 ({len(expected)} events), "
          f"{failed.total()} did not")
    for reason, count in failed.most_common(10):
        print(f"  not answered 200: {count} x {reason}")
    for what, ids in (("missing from the sink", missing), ("bytes differ", different)):
        for item in ids[:10]:
            print(f"  {what}: {item}")
        if len(ids) > 10:
            print(f"  ... and {len(ids) - 10} more {what}")
    bad = failed.total() + len(missing) + len(different)
    print(f"verify: {passed} passed, {bad} failed")
    sys.exit(0 if bad == 0 and passed > 0 else 1)


if __name__ == "__main__":
    main()
