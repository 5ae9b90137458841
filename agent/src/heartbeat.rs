//! Heartbeats that nothing else in the agent can delay: a load gauge the
//! actors update and a sampler thread refreshes, and one task per session
//! that turns the gauge into a `Load` frame on every beat.
//!
//! A coordinator declares an agent lost when it stops hearing from it, so a
//! heartbeat must never wait on an actor's mailbox or on a blocking call.
//! The beat task only reads the gauge (an atomic and a copy under a lock
//! held for nanoseconds) and queues a frame; measuring the host (sysinfo,
//! `statvfs` of every mount, slow under emulation) happens on a dedicated
//! OS thread, never on the async workers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rustle_protocol::AgentToCoordinator;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use crate::capabilities::HostLoad;

/// How often the sampler thread measures the host at most; with shorter
/// heartbeat intervals several beats carry the same sample.
const MIN_SAMPLE_PERIOD: Duration = Duration::from_millis(500);

/// The agent's current load as heartbeats report it: the running-job count
/// (kept by the listener, which owns the slots) and the latest host sample
/// (shared by every agent of one process: one sampler measures the host).
#[derive(Debug, Default)]
pub struct LoadGauge {
    running_jobs: AtomicU32,
    host: Arc<Mutex<HostLoad>>,
}

impl LoadGauge {
    /// A gauge starting from one host measurement.
    pub fn new(host: HostLoad) -> Self {
        Self { running_jobs: AtomicU32::new(0), host: Arc::new(Mutex::new(host)) }
    }

    /// A gauge of another agent on the same host: no running jobs, and the
    /// host sample this one's sampler keeps up to date.
    pub fn sharing_host(&self) -> Self {
        Self { running_jobs: AtomicU32::new(0), host: self.host.clone() }
    }

    /// How many jobs hold a slot now.
    pub fn running_jobs(&self) -> u32 {
        self.running_jobs.load(Ordering::Relaxed)
    }

    /// The latest host measurement.
    pub fn host(&self) -> HostLoad {
        // A poisoned lock still holds a whole `HostLoad` (it is `Copy`).
        *self.host.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records how many jobs hold a slot (the listener, on every change).
    pub fn set_running_jobs(&self, running: usize) {
        self.running_jobs.store(u32::try_from(running).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    /// Records a new host measurement (the sampler).
    pub fn set_host(&self, host: HostLoad) {
        *self.host.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = host;
    }
}

/// The sampler thread; dropping it stops the thread (without waiting for it).
#[derive(Debug)]
pub struct HostSampler {
    _stop: mpsc::Sender<()>,
}

impl HostSampler {
    /// Measures the host into `gauge` every `period` (at least
    /// [`MIN_SAMPLE_PERIOD`]) on a thread of its own, until dropped.
    pub fn start(gauge: Arc<LoadGauge>, work_dir: PathBuf, period: Duration) -> std::io::Result<Self> {
        let period = period.max(MIN_SAMPLE_PERIOD);
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new().name("host-sampler".into()).spawn(move || {
            // `recv_timeout` returns Timeout while the sampler is alive and
            // Disconnected once it is dropped.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                gauge.set_host(HostLoad::measure(&work_dir));
            }
        })?;
        Ok(Self { _stop: stop })
    }
}

/// Sends a `Load` frame to `outbound` every `interval`, starting with one
/// right away, until the frame queue is closed. The task reads only the
/// gauge, so a busy actor or runtime worker elsewhere cannot hold a beat
/// back (a late tick fires as soon as the task runs, then the beat resumes).
pub fn spawn_beats(
    gauge: Arc<LoadGauge>,
    interval: Duration,
    outbound: UnboundedSender<AgentToCoordinator>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sequence = 0u64;
        loop {
            ticker.tick().await;
            sequence += 1;
            let update = gauge.host().update(sequence, gauge.running_jobs());
            if outbound.send(AgentToCoordinator::Load(update)).is_err() {
                return;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustle_protocol::LoadAverage;

    fn host(available: u64) -> HostLoad {
        HostLoad {
            memory_total_bytes: 8 << 30,
            memory_available_bytes: available,
            load: LoadAverage { one: 1.5, five: 1.0, fifteen: 0.5 },
            disk_free_bytes: 1 << 30,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn beats_carry_the_gauge_in_sequence_and_stop_with_the_queue() {
        let gauge = Arc::new(LoadGauge::new(host(100)));
        let (outbound, mut frames) = tokio::sync::mpsc::unbounded_channel();
        let beats = spawn_beats(gauge.clone(), Duration::from_millis(30), outbound);

        let Some(AgentToCoordinator::Load(first)) = frames.recv().await else { panic!("a Load frame") };
        assert_eq!((first.sequence, first.running_jobs, first.memory_available_bytes), (1, 0, 100));

        gauge.set_running_jobs(2);
        gauge.set_host(host(50));
        let Some(AgentToCoordinator::Load(second)) = frames.recv().await else { panic!("a Load frame") };
        assert_eq!((second.sequence, second.running_jobs, second.memory_available_bytes), (2, 2, 50));
        assert_eq!(second.load.one, 1.5);

        drop(frames);
        tokio::time::timeout(Duration::from_secs(5), beats).await.expect("the task ends").expect("no panic");
    }

    /// The point of the design: a runtime worker stuck in blocking work does
    /// not stop the beat, because the beat needs nothing but the gauge.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_blocked_in_synchronous_work_does_not_stop_the_beat() {
        let gauge = Arc::new(LoadGauge::new(host(1)));
        let (outbound, mut frames) = tokio::sync::mpsc::unbounded_channel();
        let _beats = spawn_beats(gauge, Duration::from_millis(20), outbound);
        let _ = frames.recv().await;
        // Occupy one worker with a synchronous loop, as an unpack or a hash would.
        let hog = tokio::spawn(async {
            let until = std::time::Instant::now() + Duration::from_millis(600);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        });
        let mut beats_while_blocked = 0;
        while !hog.is_finished() {
            if tokio::time::timeout(Duration::from_secs(5), frames.recv()).await.is_ok() {
                beats_while_blocked += 1;
            }
        }
        assert!(beats_while_blocked >= 3, "only {beats_while_blocked} beats while a worker was blocked");
    }

    #[test]
    fn the_sampler_refreshes_the_gauge_until_dropped() {
        let gauge = Arc::new(LoadGauge::new(HostLoad::default()));
        let sampler = HostSampler::start(gauge.clone(), std::env::temp_dir(), Duration::ZERO).expect("thread");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while gauge.host().memory_total_bytes == 0 {
            assert!(std::time::Instant::now() < deadline, "the sampler never measured the host");
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(sampler);
    }
}
