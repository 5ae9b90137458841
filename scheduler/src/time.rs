//! Virtual time: [`Timestamp`], a point on the caller's clock, so the scheduler never reads one.

use std::fmt;
use std::ops::Add;
use std::time::Duration;

use serde::{Serialize, Serializer};

/// A point in time, as the time elapsed since an epoch the caller picks (for
/// example the coordinator's start: `Timestamp::since_epoch(start.elapsed())`).
///
/// The scheduler only compares timestamps and adds durations to them, so tests
/// drive it with made-up values and never sleep. Serialized as whole
/// milliseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The point `elapsed` after the epoch.
    pub const fn since_epoch(elapsed: Duration) -> Self {
        Self(elapsed)
    }

    /// The point `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// The point `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// Time since the epoch.
    pub const fn elapsed_since_epoch(self) -> Duration {
        self.0
    }

    /// Whole milliseconds since the epoch (saturating at `u64::MAX`).
    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// How long after `earlier` this is; zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }

    /// This point plus `duration`, saturating at the end of time instead of overflowing.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Self;

    /// Saturating: a huge deadline means "never", not a panic.
    fn add(self, duration: Duration) -> Self {
        self.saturating_add(duration)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.3}s", self.0.as_secs_f64())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_orders() {
        let t = Timestamp::from_secs(2);
        assert_eq!(t + Duration::from_millis(500), Timestamp::from_millis(2500));
        assert_eq!(Timestamp::from_secs(1).saturating_duration_since(t), Duration::ZERO);
        assert_eq!(t.saturating_duration_since(Timestamp::ZERO), Duration::from_secs(2));
        assert_eq!(
            Timestamp::since_epoch(Duration::MAX) + Duration::from_secs(1),
            Timestamp::since_epoch(Duration::MAX)
        );
        assert!(Timestamp::ZERO < t);
        assert_eq!(t.to_string(), "t+2.000s");
    }
}
