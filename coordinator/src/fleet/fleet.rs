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

/// The fleet actor.
pub(crate) struct FleetActor;

/// One registry entry.
struct Entry {
    address: String,
    connection: ConnectionState,
    capabilities: Option<CapabilityReport>,
    session: Option<ActorRef<session::Msg>>,
}

/// The registry and the callers waiting for it to settle.
pub(crate) struct State {
    agents: BTreeMap<String, Entry>,
    waiting: Vec<RpcReplyPort<()>>,
}

impl State {
    fn settled(&self) -> bool {
        self.agents.values().all(|e| e.connection != ConnectionState::Connecting)
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
        let mut state = State { agents: BTreeMap::new(), waiting: Vec::new() };
        for agent in &args.agents {
            let session_args = session::Arguments {
                name: agent.name.clone(),
                address: agent.address.clone(),
                dialer: args.dialer.clone(),
                hello: args.hello.clone(),
                scheduler: args.scheduler.clone(),
                fleet: myself.clone(),
                connect_timeout: args.connect_timeout,
            };
            let (connection, session) = match Actor::spawn(None, session::SessionActor, session_args).await {
                Ok((session, _)) => (ConnectionState::Connecting, Some(session)),
                Err(error) => {
                    (ConnectionState::Failed { reason: format!("failed to start its session: {error}") }, None)
                }
            };
            state.agents.insert(
                agent.name.clone(),
                Entry { address: agent.address.clone(), connection, capabilities: None, session },
            );
        }
        Ok(state)
    }

    async fn handle(&self, _myself: ActorRef<Msg>, msg: Msg, state: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            Msg::SessionUp { name, report } => {
                if let Some(entry) = state.agents.get_mut(&name) {
                    entry.connection = ConnectionState::Connected;
                    entry.capabilities = Some(*report);
                }
                state.wake_waiters();
            }
            Msg::SessionDown { name, reason } => {
                if let Some(entry) = state.agents.get_mut(&name) {
                    entry.connection = ConnectionState::Failed { reason: without_repeated_name(&name, reason) };
                    entry.session = None;
                }
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
    use super::without_repeated_name;

    #[test]
    fn the_agent_is_named_once() {
        let doubled = "agent a: agent a at 127.0.0.1:1 closed the connection: bye".to_owned();
        assert_eq!(without_repeated_name("a", doubled), "agent a at 127.0.0.1:1 closed the connection: bye");
        let single = "agent a: the agent ended the control stream".to_owned();
        assert_eq!(without_repeated_name("a", single.clone()), single);
    }
}
