//! The unbatched path (`BATCH_ENABLED=false`): one [`crate::sink::Sink::put_one`] call
//! per record, all at once, each cut off at the records' deadline.

use tokio::task::JoinSet;
use tokio::time::{Instant, timeout_at};

use super::{Writer, in_flight_past_deadline};
use crate::metrics::GaugeGuard;
use crate::sink::{Outcomes, Receipt, Record, SinkError};

impl Writer {
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
