//! What requests in flight share: the caps every door's requests hold a
//! place in (`MAX_IN_FLIGHT_REQUESTS`, `MAX_IN_FLIGHT_BODY_BYTES`) and the
//! body deadline. Owned here, used by the ingest step (`ingest.rs`), so no
//! other layer reaches into the semaphores.

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Duration;

use crate::config::HttpConfig;
use crate::error::ApiError;

/// What every door shares: the in-flight caps and the body
/// deadline, owned here so no other layer reaches into them.
#[derive(Debug)]
pub struct InFlight {
    /// One permit per event request in flight (`MAX_IN_FLIGHT_REQUESTS`).
    slots: Semaphore,
    /// One permit per byte held by requests in flight (`MAX_IN_FLIGHT_BODY_BYTES`).
    budget: Semaphore,
    /// How long a body may take to arrive.
    body_read_timeout: Duration,
}

impl InFlight {
    /// The caps and deadline of `http`.
    pub fn new(http: &HttpConfig) -> Self {
        InFlight {
            slots: Semaphore::new(http.max_in_flight_requests.get()),
            budget: Semaphore::new(http.max_in_flight_body_bytes.get()),
            body_read_timeout: http.body_read_timeout,
        }
    }

    /// A place among the requests in flight, or 503 at once: a queue that
    /// grows helps no one.
    pub fn slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        self.slots
            .try_acquire()
            .map_err(|_| ApiError::Overloaded("too many requests in flight"))
    }

    /// The in-flight byte budget.
    pub fn budget(&self) -> &Semaphore {
        &self.budget
    }

    /// How long a body may take to arrive.
    pub fn body_read_timeout(&self) -> Duration {
        self.body_read_timeout
    }
}

/// `bytes` of the in-flight budget, or 503 at once when they are not free.
pub(crate) fn reserve(budget: &Semaphore, bytes: usize) -> Result<SemaphorePermit<'_>, ApiError> {
    u32::try_from(bytes)
        .ok()
        .and_then(|n| budget.try_acquire_many(n).ok())
        .ok_or(ApiError::Overloaded("too many body bytes in flight"))
}
