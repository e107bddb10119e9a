//! librdkafka's mock cluster (rdkafka's `mocking` module) as a process of
//! its own: a Kafka broker for `bench/run.py`'s Kafka systems that is not
//! the bottleneck (it appends produce requests to in-memory logs), so the
//! gateway's own CPU per event on the Kafka path can be compared with the
//! Kinesis path's. Its brokers listen on 127.0.0.1 (librdkafka binds the
//! mock brokers to loopback). Creates TOPIC with PARTITIONS partitions,
//! prints the bootstrap servers, then runs until killed.
//!
//!   mock_kafka [TOPIC] [PARTITIONS]   (default: clicks 8)

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

fn main() {
    let mut args = std::env::args().skip(1);
    let topic = args.next().unwrap_or_else(|| "clicks".into());
    let partitions: i32 = args.next().and_then(|p| p.parse().ok()).unwrap_or(8);
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1).expect("the mock cluster starts");
    cluster
        .create_topic(&topic, partitions, 1)
        .expect("the topic is created");
    println!("{}", cluster.bootstrap_servers());
    loop {
        std::thread::park();
    }
}
