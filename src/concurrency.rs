//! The adaptive limit on upstream calls in flight: the writer sends less
//! when the stream slows down or pushes back, and more when it keeps up.
//!
//! The design is Vector's adaptive request concurrency (ARC), itself TCP's
//! AIMD with a latency signal. Time is cut into windows of about one round
//! trip. At the end of a window:
//! - any back-pressure in it (throttling, a failed or abandoned call) cuts
//!   the limit by [`DECREASE`], as does a window whose mean round trip is
//!   well above the moving mean of past windows (queues are building up
//!   upstream);
//! - otherwise, when the limit was reached and the round trip stayed within
//!   one mean deviation of the past mean, the limit rises by one.
//!
//! A call that ran into its deadline, or records not sent because the
//! stream would answer after their deadline, cut the limit at once, by half
//! ([`TIMEOUT_DECREASE`]), without waiting for the window to end: when a
//! round trip is seconds long, a tenth per window is far too slow, and calls
//! pile up past their deadlines. Like TCP's one cut per window of data, a
//! call started before the last such cut does not cut again, so a burst of
//! timeouts from one moment halves the limit once, not once per call.
//!
//! Why not a crate: `tower-acc` (Vegas, Gradient2, AIMD) was the candidate.
//! Its Vegas and Gradient2 keep a no-load round trip as the baseline, so a
//! stream that becomes slow for reasons that are not our load (a hot shard
//! elsewhere, a delaying proxy: latency 100 times the baseline whatever we
//! send) collapses them to one call for minutes, and the writer then cannot
//! keep up with what clients send; its AIMD ignores latency below a fixed
//! timeout. ARC's moving mean adapts to a new level within a few windows.

use std::time::Duration;

use tokio::time::Instant;

/// The limit is multiplied by this on back-pressure or a rising round trip.
const DECREASE: f64 = 0.9;
/// The limit is multiplied by this at once when a call runs into its
/// deadline or records miss theirs.
const TIMEOUT_DECREASE: f64 = 0.5;
/// A window's mean round trip may exceed the past mean by this many mean
/// deviations before it counts as rising (Vector's `rtt_deviation_scale`).
const DEVIATION_SCALE: f64 = 2.5;
/// Weight of the newest window in the moving means (Vector's `ewma_alpha`).
const ALPHA: f64 = 0.4;

/// Whether calls adapt, or run at a fixed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Between 1 and the ceiling, driven by latency and back-pressure.
    Adaptive,
    /// Always the ceiling.
    Fixed,
}

/// The limit and what it has seen; owned by the writer's dispatcher.
#[derive(Debug)]
pub(crate) struct Limit {
    mode: Mode,
    limit: f64,
    ceiling: usize,
    in_flight: usize,
    /// The moving means of past windows' round trips, once there is one.
    past: Option<Moving>,
    window: Window,
    /// When the limit was last cut at once for a timeout.
    last_cut: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Moving {
    mean: f64,
    deviation: f64,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    rtt_sum: f64,
    calls: u32,
    back_pressure: bool,
    reached: bool,
}

impl Window {
    fn new(now: Instant) -> Self {
        Window {
            started: now,
            rtt_sum: 0.0,
            calls: 0,
            back_pressure: false,
            reached: false,
        }
    }
}

/// How a call ended, as the limit sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The stream answered and took every record it did not refuse.
    Answered,
    /// The stream pushed back: the call failed or entries were throttled.
    BackPressure,
    /// The call ran into its deadline: cut at once.
    Timeout,
}

impl Limit {
    /// A limit that starts at `initial` and never exceeds `ceiling`.
    pub(crate) fn new(mode: Mode, initial: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        let limit = match mode {
            Mode::Adaptive => initial.clamp(1, ceiling),
            Mode::Fixed => ceiling,
        };
        Limit {
            mode,
            limit: limit as f64,
            ceiling,
            in_flight: 0,
            past: None,
            window: Window::new(Instant::now()),
            last_cut: None,
        }
    }

    /// Calls allowed in flight now.
    pub(crate) fn current(&self) -> usize {
        self.limit as usize
    }

    /// Calls in flight now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The moving mean round trip, once a window has ended.
    pub(crate) fn mean_rtt(&self) -> Option<Duration> {
        self.past.map(|p| Duration::from_secs_f64(p.mean))
    }

    /// Takes a slot for a call when one is free.
    pub(crate) fn try_start(&mut self) -> bool {
        if self.in_flight >= self.current() {
            return false;
        }
        self.in_flight += 1;
        if self.in_flight >= self.current() {
            self.window.reached = true;
        }
        true
    }

    /// Frees a slot taken by [`Limit::try_start`].
    pub(crate) fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// An upstream attempt took `rtt` and ended with `signal`. A slot may see
    /// several (retries of entries that failed alone).
    pub(crate) fn observe(&mut self, rtt: Duration, signal: Signal, now: Instant) {
        if self.mode == Mode::Fixed {
            return;
        }
        match signal {
            Signal::Answered => {
                self.window.rtt_sum += rtt.as_secs_f64();
                self.window.calls += 1;
            }
            Signal::BackPressure => self.window.back_pressure = true,
            // The cut at once stands for the window's: not both.
            Signal::Timeout => self.cut_at_once(now.checked_sub(rtt).unwrap_or(now), now),
        }
        let length = self.past.map_or(0.0, |p| p.mean);
        if now.duration_since(self.window.started).as_secs_f64() >= length {
            self.end_window(now);
        }
    }

    /// Records were not sent at `now` because the stream would answer after
    /// their deadline: cut at once, as for a call that timed out.
    pub(crate) fn deadline_missed(&mut self, now: Instant) {
        if self.mode == Mode::Adaptive {
            self.cut_at_once(now, now);
        }
    }

    /// Halves the limit now, unless it was already cut since `started` (the
    /// moment the failing call or records were sent).
    fn cut_at_once(&mut self, started: Instant, now: Instant) {
        if self.last_cut.is_some_and(|cut| started <= cut) {
            return;
        }
        self.limit = (self.limit * TIMEOUT_DECREASE).max(1.0);
        self.last_cut = Some(now);
    }

    fn end_window(&mut self, now: Instant) {
        let window = std::mem::replace(&mut self.window, Window::new(now));
        let current = (window.calls > 0).then(|| window.rtt_sum / f64::from(window.calls));
        let rising = match (self.past, current) {
            (Some(past), Some(current)) => current > past.mean + DEVIATION_SCALE * past.deviation,
            _ => false,
        };
        if window.back_pressure || rising {
            self.limit = (self.limit * DECREASE).max(1.0);
        } else if window.reached && current.is_some_and(|c| self.past.is_none_or(|p| c <= p.mean + p.deviation)) {
            self.limit = (self.limit.floor() + 1.0).min(self.ceiling as f64);
        }
        if let Some(current) = current {
            self.past = Some(match self.past {
                None => Moving {
                    mean: current,
                    deviation: 0.0,
                },
                Some(past) => Moving {
                    mean: past.mean + ALPHA * (current - past.mean),
                    deviation: past.deviation + ALPHA * ((current - past.mean).abs() - past.deviation),
                },
            });
        }
        // A window may already be at its limit when it opens.
        self.window.reached = self.in_flight >= self.current();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs `windows` windows of `limit` calls that each take `rtt`.
    fn saturate(limit: &mut Limit, now: &mut Instant, rtt: Duration, signal: Signal, windows: usize) {
        for _ in 0..windows {
            let calls = limit.current();
            for _ in 0..calls {
                assert!(limit.try_start());
            }
            *now += rtt;
            for _ in 0..calls {
                limit.release();
                limit.observe(rtt, signal, *now);
            }
        }
    }

    #[test]
    fn a_timeout_halves_the_limit_at_once_and_a_burst_of_them_only_once() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Adaptive, 16, 64);
        let started = now;
        for _ in 0..16 {
            assert!(limit.try_start());
        }
        now += 9000 * MS;
        // Sixteen calls sent together all run into the deadline.
        for _ in 0..16 {
            limit.release();
            limit.observe(now - started, Signal::Timeout, now);
        }
        assert_eq!(limit.current(), 8, "halved once, at once");
        // A call sent after the cut that times out cuts again.
        now += 100 * MS;
        let sent = now;
        now += 9000 * MS;
        limit.observe(now - sent, Signal::Timeout, now);
        assert_eq!(limit.current(), 4);
        // Records that would miss their deadline cut too, once per moment.
        limit.deadline_missed(now);
        assert_eq!(limit.current(), 4, "already cut at this moment");
        limit.deadline_missed(now + MS);
        assert_eq!(limit.current(), 2);
        let mut fixed = Limit::new(Mode::Fixed, 4, 4);
        fixed.deadline_missed(now);
        fixed.observe(MS, Signal::Timeout, now);
        assert_eq!(fixed.current(), 4, "a fixed limit never moves");
    }

    #[test]
    fn a_saturated_stream_that_keeps_up_gets_one_more_call_per_window_up_to_the_ceiling() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Adaptive, 4, 8);
        saturate(&mut limit, &mut now, 20 * MS, Signal::Answered, 3);
        assert_eq!(limit.current(), 7);
        saturate(&mut limit, &mut now, 20 * MS, Signal::Answered, 10);
        assert_eq!(limit.current(), 8, "never above the ceiling");
    }

    #[test]
    fn back_pressure_cuts_the_limit_and_it_never_falls_below_one() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Adaptive, 20, 20);
        saturate(&mut limit, &mut now, 20 * MS, Signal::Answered, 1);
        saturate(&mut limit, &mut now, 20 * MS, Signal::BackPressure, 1);
        assert_eq!(limit.current(), 18);
        saturate(&mut limit, &mut now, 20 * MS, Signal::BackPressure, 100);
        assert_eq!(limit.current(), 1);
    }

    #[test]
    fn a_rising_round_trip_cuts_the_limit_then_a_steady_slow_stream_earns_it_back() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Adaptive, 10, 32);
        saturate(&mut limit, &mut now, 10 * MS, Signal::Answered, 5);
        let before = limit.current();
        // The stream gets 200 times slower: fewer calls at once.
        saturate(&mut limit, &mut now, 2000 * MS, Signal::Answered, 1);
        assert!(limit.current() < before, "{} < {before}", limit.current());
        // It stays that slow, answering everything: the mean catches up and
        // the limit grows again instead of collapsing to one.
        saturate(&mut limit, &mut now, 2000 * MS, Signal::Answered, 8);
        assert!(limit.current() > before, "{} > {before}", limit.current());
    }

    #[test]
    fn an_idle_writer_does_not_grow_its_limit() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Adaptive, 4, 32);
        for _ in 0..50 {
            assert!(limit.try_start());
            now += 10 * MS;
            limit.release();
            limit.observe(10 * MS, Signal::Answered, now);
        }
        assert_eq!(limit.current(), 4, "one call at a time never reaches the limit");
    }

    #[test]
    fn fixed_mode_stays_at_the_ceiling() {
        let mut now = Instant::now();
        let mut limit = Limit::new(Mode::Fixed, 1, 6);
        saturate(&mut limit, &mut now, 20 * MS, Signal::BackPressure, 5);
        assert_eq!(limit.current(), 6);
        assert!(limit.try_start());
        assert_eq!(limit.in_flight(), 1);
    }
}
