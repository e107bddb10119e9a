"""Every record of a Kinesis stream, read back with boto3 (against an
emulator: kinesis-local, ferrokinesis)."""

import time


def read_stream(kinesis, stream, empty_pages=3):
    """Every record of every shard from the start, as (shard id, partition
    key, data bytes), each shard in order; a shard is done after
    `empty_pages` empty pages in a row. `kinesis` is a boto3 client."""
    records = []
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        empty = 0
        while iterator and empty < empty_pages:
            got = kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for r in got["Records"]:
                records.append((shard["ShardId"], r["PartitionKey"], r["Data"]))
            empty = 0 if got["Records"] else empty + 1
            iterator = got.get("NextShardIterator")
    return records


def read_receipts(kinesis, stream):
    """Every record of every shard, by receipt: {(shard id, sequence
    number): data bytes}, to look up what a 200 answered."""
    records = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
            for r in page["Records"]:
                records[(shard["ShardId"], r["SequenceNumber"])] = r["Data"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


def read_since(kinesis, stream, since_ms, deadline_s):
    """Data of every record stored from `since_ms` on (less a minute of
    clock slack), until each shard is caught up or the deadline passes:
    for a real stream, where reading from the start is too much."""
    deadline = time.monotonic() + deadline_s
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="AT_TIMESTAMP",
            Timestamp=(since_ms - 60_000) / 1000)["ShardIterator"]
        while iterator and time.monotonic() < deadline:
            out = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in out["Records"]:
                yield record["Data"]
            if not out["Records"] and out.get("MillisBehindLatest", 0) == 0:
                break
            iterator = out.get("NextShardIterator")
            time.sleep(0.2)  # Kinesis allows 5 GetRecords calls per second per shard
