//! The paths without the writer's gathering: one
//! [`crate::sink::Sink::put_one`] call per record, all at once
//! (`BATCHING=false`), or one [`crate::sink::Sink::put_batch`] call per
//! request for a sink that batches itself (Kafka); each cut off at the
//! records' deadline.

use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use super::{Writer, in_flight_past_deadline, measured_call, one_per_record};
use crate::metrics::GaugeGuard;
use crate::sink::{Outcomes, Receipt, Record, SinkError};

impl Writer {
    /// One call for the request's records, straight to a sink that
    /// batches itself: no queue, no gathering, librdkafka's linger alone.
    /// Memory stays bounded by the requests' in-flight budget, which holds
    /// these records until they are answered; the client's own queue full
    /// is [`SinkError::Overloaded`], as the writer's would be.
    pub(super) async fn put_through(&self, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let (result, _) = measured_call(self.sink.as_ref(), &self.metrics, &records, deadline).await;
        one_per_record(result, records.len()).unwrap_or_else(|error| vec![Err(error); records.len()])
    }

    /// One call per record, all at once.
    pub(super) async fn put_direct(&self, records: Vec<Record>, deadline: Instant) -> Outcomes {
        let mut calls = JoinSet::new();
        for (index, record) in records.into_iter().enumerate() {
            let (sink, metrics) = (self.sink.clone(), self.metrics.clone());
            calls.spawn(async move {
                let _in_flight = GaugeGuard::inc(metrics.upstream_in_flight());
                let started = std::time::Instant::now();
                let outcome = timeout_at(deadline, sink.put_one(&record))
                    .await
                    .unwrap_or_else(|_| Err(in_flight_past_deadline()));
                metrics.upstream_call(sink.operation(false), outcome.as_ref().err(), started.elapsed());
                (index, outcome)
            });
        }
        let mut outcomes: Vec<Option<Result<Receipt, SinkError>>> = vec![None; calls.len()];
        while let Some(joined) = calls.join_next().await {
            if let Ok((index, outcome)) = joined {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(SinkError::Unavailable("the write task failed".into()))))
            .collect()
    }
}
