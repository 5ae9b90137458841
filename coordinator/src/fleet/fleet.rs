//! The fleet actor: owns the agent registry (address, connection state, capabilities) and starts one session actor per configured agent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rustle_protocol::{CapabilityReport, Hello};
use rustle_transport::CoordinatorDialer;

use super::config::AgentEndpoint;
use super::{AgentView, ConnectionState, scheduler, session};

/// What the fleet actor is told.
pub(crate) enum Msg {
    /// A session's agent connected and reported its capabilities.
    SessionUp {
        /// The agent's configured name.
        name: String,
        /// Its report.
        report: Box<CapabilityReport>,
    },
    /// A session failed to connect, or its connection ended.
    SessionDown {
        /// The agent's configured name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Reply once no agent is still connecting.
    WaitReady(RpcReplyPort<()>),
    /// Dial every agent without a connection now (not at its backoff's
    /// next try), then reply once no agent is still connecting: a new build
    /// finds an agent that came back in the meantime.
    Refresh(RpcReplyPort<()>),
    /// An agent's backoff is over: dial it again (from a timer).
    Redial {
        /// The agent's configured name.
        name: String,
        /// Which backoff this timer belongs to; a stale one is ignored.
        generation: u64,
    },
    /// Reply with the registry.
    Registry(RpcReplyPort<Vec<AgentView>>),
}

/// What the fleet actor starts with.
pub(crate) struct Arguments {
    /// Agents to dial.
    pub(crate) agents: Vec<AgentEndpoint>,
    /// The QUIC endpoint sessions dial from.
    pub(crate) dialer: Arc<CoordinatorDialer>,
    /// The scheduler actor.
    pub(crate) scheduler: ActorRef<scheduler::Msg>,
    /// Our side of the version handshake.
    pub(crate) hello: Hello,
    /// Bound on connecting and receiving the capability report.
    pub(crate) connect_timeout: Duration,
}

/// The first wait before dialling a lost agent again; it doubles with each
/// failed attempt up to [`REDIAL_MAX`].
const REDIAL_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
const REDIAL_MAX: Duration = Duration::from_secs(30);
/// After this many failed attempts in a row an agent counts as down: calls
/// stop waiting for its redials (the first redial after a lost connection
/// is waited for: that is the agent that restarted).
const DOWN_AFTER_FAILURES: u32 = 2;

/// Handshakes in flight at once. Each takes a few milliseconds of CPU on
/// both sides; a fleet of a thousand dialled all at once would share the
/// CPU between all of them, and each would take long enough to run out of
/// its connect timeout. A session's timeout starts when its dial does.
const MAX_CONCURRENT_DIALS: usize = 32;

/// The wait before attempt `failures + 1` at an agent.
pub(crate) fn redial_backoff(failures: u32) -> Duration {
    REDIAL_FIRST.saturating_mul(1 << failures.min(16)).min(REDIAL_MAX)
}

/// The fleet actor.
pub(crate) struct FleetActor;

/// One registry entry.
struct Entry {
    address: String,
    connection: ConnectionState,
    capabilities: Option<CapabilityReport>,
    session: Option<ActorRef<session::Msg>>,
    /// Handshakes completed with the agent since the fleet started.
    connects: u32,
    /// Attempts failed since the last connection (the backoff's exponent).
    failures: u32,
    /// Bumped whenever a redial is armed or done, so older timers are ignored.
    generation: u64,
}

/// The registry, what sessions are started with, and the callers waiting
/// for the registry to settle.
pub(crate) struct State {
    agents: BTreeMap<String, Entry>,
    dialer: Arc<CoordinatorDialer>,
    scheduler: ActorRef<scheduler::Msg>,
    hello: Hello,
    connect_timeout: Duration,
    /// Permits for handshakes in flight ([`MAX_CONCURRENT_DIALS`]).
    dials: Arc<tokio::sync::Semaphore>,
    waiting: Vec<RpcReplyPort<()>>,
}

impl State {
    /// Starts a session dialling agent `name`; its outcome comes back as
    /// [`Msg::SessionUp`] or [`Msg::SessionDown`].
    async fn dial(&mut self, myself: &ActorRef<Msg>, name: &str) {
        let Some(entry) = self.agents.get_mut(name) else { return };
        let session_args = session::Arguments {
            name: name.to_owned(),
            address: entry.address.clone(),
            dialer: self.dialer.clone(),
            hello: self.hello.clone(),
            scheduler: self.scheduler.clone(),
            fleet: myself.clone(),
            connect_timeout: self.connect_timeout,
            dials: self.dials.clone(),
        };
        entry.generation += 1;
        match Actor::spawn(None, session::SessionActor, session_args).await {
            Ok((session, _)) => {
                entry.connection = ConnectionState::Connecting;
                entry.session = Some(session);
            }
            Err(error) => {
                entry.connection = ConnectionState::Failed { reason: format!("failed to start its session: {error}") };
            }
        }
    }

    /// No agent worth waiting for is still connecting. One that failed
    /// again after losing its connection ([`DOWN_AFTER_FAILURES`]) is dialled
    /// in the background without holding up a build: a dead host would
    /// otherwise cost every later call the whole connect timeout.
    fn settled(&self) -> bool {
        self.agents.values().all(|e| e.connection != ConnectionState::Connecting || e.failures >= DOWN_AFTER_FAILURES)
    }

    fn wake_waiters(&mut self) {
        if self.settled() {
            for waiter in self.waiting.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

impl Actor for FleetActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    /// Starts one session per agent; each dials in its own task.
    async fn pre_start(&self, myself: ActorRef<Msg>, args: Arguments) -> Result<State, ActorProcessingErr> {
        let agents = args
            .agents
            .iter()
            .map(|agent| {
                let entry = Entry {
                    address: agent.address.clone(),
                    connection: ConnectionState::Connecting,
                    capabilities: None,
                    session: None,
                    connects: 0,
                    failures: 0,
                    generation: 0,
                };
                (agent.name.clone(), entry)
            })
            .collect();
        let mut state = State {
            agents,
            dialer: args.dialer,
            scheduler: args.scheduler,
            hello: args.hello,
            connect_timeout: args.connect_timeout,
            dials: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_DIALS)),
            waiting: Vec::new(),
        };
        let names: Vec<String> = state.agents.keys().cloned().collect();
        for name in names {
            state.dial(&myself, &name).await;
        }
        Ok(state)
    }

    async fn handle(&self, myself: ActorRef<Msg>, msg: Msg, state: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::SessionUp { name, report } => {
                if let Some(entry) = state.agents.get_mut(&name) {
                    entry.connection = ConnectionState::Connected;
                    entry.capabilities = Some(*report);
                    entry.connects += 1;
                    entry.failures = 0;
                }
                state.wake_waiters();
            }
            Msg::SessionDown { name, reason } => {
                if let Some(entry) = state.agents.get_mut(&name) {
                    entry.connection = ConnectionState::Failed { reason: without_repeated_name(&name, reason) };
                    entry.session = None;
                    // Dial again later: an agent that restarts is used again.
                    let wait = redial_backoff(entry.failures);
                    entry.failures += 1;
                    entry.generation += 1;
                    let generation = entry.generation;
                    myself.send_after(wait, move || Msg::Redial { name, generation });
                }
                state.wake_waiters();
            }
            Msg::Redial { name, generation } => {
                if state.agents.get(&name).is_some_and(|e| e.session.is_none() && e.generation == generation) {
                    state.dial(&myself, &name).await;
                }
            }
            Msg::Refresh(reply) => {
                let idle: Vec<String> =
                    state.agents.iter().filter(|(_, e)| e.session.is_none()).map(|(name, _)| name.clone()).collect();
                for name in idle {
                    state.dial(&myself, &name).await;
                }
                state.waiting.push(reply);
                state.wake_waiters();
            }
            Msg::WaitReady(reply) => {
                state.waiting.push(reply);
                state.wake_waiters();
            }
            Msg::Registry(reply) => {
                let views = state
                    .agents
                    .iter()
                    .map(|(name, entry)| AgentView {
                        name: name.clone(),
                        address: entry.address.clone(),
                        connection: entry.connection.clone(),
                        capabilities: entry.capabilities.clone(),
                        connects: entry.connects,
                        status: None,
                    })
                    .collect();
                let _ = reply.send(views);
            }
        }
        Ok(())
    }

    /// Closes every session.
    async fn post_stop(&self, _myself: ActorRef<Msg>, state: &mut State) -> Result<(), ActorProcessingErr> {
        for entry in state.agents.values_mut() {
            if let Some(session) = entry.session.take() {
                let _ = session.send_message(session::Msg::Close { reason: "the coordinator is done".into() });
            }
        }
        Ok(())
    }
}

/// `agent a: agent a at 10.0.0.1:4433 closed ...` -> `agent a at 10.0.0.1:4433
/// closed ...`: a session puts the agent's name before transport errors that
/// already start with it.
fn without_repeated_name(name: &str, reason: String) -> String {
    match reason.strip_prefix(&format!("agent {name}: ")) {
        Some(rest) if rest.contains(&format!("agent {name} ")) => rest.to_owned(),
        _ => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::{Duration, redial_backoff, without_repeated_name};

    #[test]
    fn redials_back_off_from_half_a_second_to_thirty() {
        let waits: Vec<Duration> = (0..8).map(redial_backoff).collect();
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        assert_eq!(redial_backoff(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn the_agent_is_named_once() {
        let doubled = "agent a: agent a at 127.0.0.1:1 closed the connection: bye".to_owned();
        assert_eq!(without_repeated_name("a", doubled), "agent a at 127.0.0.1:1 closed the connection: bye");
        let single = "agent a: the agent ended the control stream".to_owned();
        assert_eq!(without_repeated_name("a", single.clone()), single);
    }
}
