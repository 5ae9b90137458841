//! The scheduler's knobs ([`SchedulerConfig`]) and what makes them invalid ([`ConfigError`]).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::executor::FallbackExecutor;

/// How the scheduler judges liveness, retries and ties.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// An agent silent for this long (no load update, no message) is lost.
    /// Typically three heartbeat intervals; see [`SchedulerConfig::heartbeat_timeout_for`].
    pub heartbeat_timeout: Duration,
    /// An agent that neither accepts nor rejects an offer within this long is
    /// treated as having rejected it: the offer is cancelled and the job placed elsewhere.
    pub offer_timeout: Duration,
    /// Dispatches of one job that may end in an infrastructure failure (or a
    /// lost agent) before the job is reported as failed.
    pub max_attempts: u32,
    /// Weight of the newest build duration in the per-executor, per-target
    /// moving average (0 < weight <= 1; 1 keeps only the last build).
    pub speed_smoothing: f64,
    /// Loads per core closer than this count as equal, so that measured speed
    /// can break the tie (load averages are never exactly equal).
    pub load_resolution: f64,
    /// The fallback chain, most preferred first.
    pub fallbacks: Vec<FallbackExecutor>,
}

impl SchedulerConfig {
    /// The heartbeat timeout for agents reporting every `interval`, allowing `misses` missed reports.
    pub fn heartbeat_timeout_for(interval: Duration, misses: u32) -> Duration {
        interval.saturating_mul(misses.max(1))
    }

    /// Checks the values; [`Scheduler::new`](crate::Scheduler::new) calls this.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration { field: "heartbeat_timeout" });
        }
        if self.offer_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration { field: "offer_timeout" });
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::NoAttempts);
        }
        if !(self.speed_smoothing > 0.0 && self.speed_smoothing <= 1.0) {
            return Err(ConfigError::SpeedSmoothing { value: self.speed_smoothing });
        }
        if !(self.load_resolution.is_finite() && self.load_resolution > 0.0) {
            return Err(ConfigError::LoadResolution { value: self.load_resolution });
        }
        let mut seen = BTreeSet::new();
        for fallback in &self.fallbacks {
            if !seen.insert(&fallback.id) {
                return Err(ConfigError::DuplicateFallback { name: fallback.id.0.clone() });
            }
        }
        Ok(())
    }
}

impl Default for SchedulerConfig {
    /// Agents reporting every 5 s are lost after 15 s of silence; offers are
    /// answered within 30 s; three attempts; no fallback.
    fn default() -> Self {
        Self {
            heartbeat_timeout: Self::heartbeat_timeout_for(Duration::from_secs(1), 3),
            offer_timeout: Duration::from_secs(30),
            max_attempts: 3,
            speed_smoothing: 0.3,
            load_resolution: 0.1,
            fallbacks: Vec::new(),
        }
    }
}

/// A [`SchedulerConfig`] value the scheduler cannot work with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A timeout or deadline of zero would expire everything at once.
    #[error("failed to configure the scheduler: `{field}` is zero; give it a positive duration")]
    ZeroDuration {
        /// The offending field.
        field: &'static str,
    },
    /// `max_attempts` is zero, so no job could ever be dispatched.
    #[error("failed to configure the scheduler: `max_attempts` is 0; allow at least one attempt")]
    NoAttempts,
    /// `speed_smoothing` is outside (0, 1].
    #[error("failed to configure the scheduler: `speed_smoothing` is {value}; use a weight in (0, 1]")]
    SpeedSmoothing {
        /// The offending value.
        value: f64,
    },
    /// `load_resolution` is not a positive number.
    #[error(
        "failed to configure the scheduler: `load_resolution` is {value}; use a positive load per core such as 0.1"
    )]
    LoadResolution {
        /// The offending value.
        value: f64,
    },
    /// Two fallbacks share a name, so decisions could not tell them apart.
    #[error("failed to configure the scheduler: two fallbacks are named `{name}`; give each a distinct name")]
    DuplicateFallback {
        /// The shared name.
        name: String,
    },
}
