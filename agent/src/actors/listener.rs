//! The listener actor: accepts coordinator connections (one session actor
//! each), owns the agent-wide job slots and the registry of warm template
//! dirs, evicts warm dirs over the size cap, and drains on shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rustle_protocol::{RejectReason, WarmCache};
use rustle_transport::{AgentListener, Connection, IncomingConnection};
use tokio::task::JoinHandle;

use super::session::{self, SessionActor};
use super::{CALL_TIMEOUT, Context, JobKey, Placement};
use crate::warm::{self, WarmRecord};

/// How long a session may take to wind down its jobs at shutdown.
const SESSION_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The listener actor.
pub(crate) struct ListenerActor;

/// What the listener is started with.
pub(crate) struct Arguments {
    /// Configuration and toolchains.
    pub context: Context,
    /// The bound QUIC endpoint.
    pub listener: Arc<AgentListener>,
}

/// The listener's messages.
pub(crate) enum Msg {
    /// A connection attempt arrived (from the accept task).
    Incoming(Box<IncomingConnection>),
    /// A coordinator completed the TLS handshake (from an authentication task).
    Authenticated(Connection),
    /// A session asks for a job slot for `key` building `template_id`.
    Reserve {
        /// The job.
        key: JobKey,
        /// Its template.
        template_id: String,
        /// Where it may build, or why it may not run.
        reply: RpcReplyPort<Result<Placement, RejectReason>>,
    },
    /// A job ended (its slot is free); `built` is the (triple, toolchain) it
    /// built successfully, if it did.
    JobEnded {
        /// The job.
        key: JobKey,
        /// What it left warm.
        built: Option<(String, String)>,
    },
    /// The warm caches held, for capability reports.
    WarmCaches(RpcReplyPort<Vec<WarmCache>>),
    /// Sizes of the warm dirs (id, bytes, last use), from a measuring task.
    Measured(Vec<(String, u64, u64)>),
    /// Stop accepting and taking jobs; the reply comes once no job runs.
    Drain(RpcReplyPort<()>),
}

/// The listener's state.
pub(crate) struct State {
    context: Context,
    accept_task: Option<JoinHandle<()>>,
    next_session: u64,
    sessions: BTreeMap<ActorId, ActorRef<session::Msg>>,
    running: BTreeMap<JobKey, (String, Placement)>,
    warm: BTreeMap<String, WarmRecord>,
    drain_waiters: Vec<RpcReplyPort<()>>,
    shutting_down: bool,
}

impl Actor for ListenerActor {
    type Msg = Msg;
    type State = State;
    type Arguments = Arguments;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let layout = args.context.layout.clone();
        // Leftovers of a previous run: scratch dirs and half-deleted evictions.
        let warm = tokio::task::spawn_blocking(move || {
            warm::remove_tree(&layout.jobs_root());
            warm::remove_tree(&layout.trash_root());
            warm::scan(&layout)
        })
        .await?;
        let listener = args.listener;
        let accept_task = tokio::spawn(async move {
            while let Some(incoming) = listener.accept().await {
                if myself.send_message(Msg::Incoming(Box::new(incoming))).is_err() {
                    break;
                }
            }
        });
        Ok(State {
            context: args.context,
            accept_task: Some(accept_task),
            next_session: 0,
            sessions: BTreeMap::new(),
            running: BTreeMap::new(),
            warm,
            drain_waiters: Vec::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            Msg::Incoming(incoming) => {
                if state.shutting_down {
                    return Ok(());
                }
                let me = myself.clone();
                tokio::spawn(async move {
                    let from = incoming.remote_address();
                    match incoming.authenticate().await {
                        Ok(connection) => {
                            let _ = me.send_message(Msg::Authenticated(connection));
                        }
                        Err(error) => tracing::warn!("refused a connection from {from}: {error}"),
                    }
                });
            }
            Msg::Authenticated(connection) => {
                if state.shutting_down {
                    connection.close("the agent is shutting down");
                    return Ok(());
                }
                state.next_session += 1;
                let args = session::Arguments {
                    context: state.context.clone(),
                    listener: myself.clone(),
                    connection: connection.clone(),
                    session: state.next_session,
                };
                match Actor::spawn_linked(None, SessionActor, args, myself.get_cell()).await {
                    Ok((session, _)) => {
                        tracing::info!("session {} with {}", state.next_session, connection.peer());
                        state.sessions.insert(session.get_id(), session);
                    }
                    Err(error) => {
                        tracing::error!("failed to start a session for {}: {error}", connection.peer());
                        connection.close("the agent could not start a session");
                    }
                }
            }
            Msg::Reserve { key, template_id, reply } => {
                let _ = reply.send(reserve(state, key, template_id));
            }
            Msg::JobEnded { key, built } => job_ended(&myself, state, key, built),
            Msg::WarmCaches(reply) => {
                let caches = state.warm.iter().flat_map(|(id, record)| record.caches(id)).collect();
                let _ = reply.send(caches);
            }
            Msg::Measured(sizes) => evict(state, &sizes),
            Msg::Drain(reply) => {
                state.shutting_down = true;
                if let Some(task) = state.accept_task.take() {
                    task.abort();
                }
                if state.running.is_empty() {
                    let _ = reply.send(());
                } else {
                    state.drain_waiters.push(reply);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.sessions.remove(&cell.get_id());
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!("a session failed: {error}");
                state.sessions.remove(&cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }

    async fn post_stop(&self, myself: ActorRef<Self::Msg>, state: &mut Self::State) -> Result<(), ActorProcessingErr> {
        if let Some(task) = state.accept_task.take() {
            task.abort();
        }
        // Each session cancels its jobs (telling the coordinator) before it ends.
        for session in std::mem::take(&mut state.sessions).into_values() {
            let _ = session.call(session::Msg::Shutdown, Some(SESSION_SHUTDOWN_TIMEOUT)).await;
        }
        myself.stop_children_and_wait(None, Some(SESSION_SHUTDOWN_TIMEOUT)).await;
        Ok(())
    }
}

/// Grants a slot, or says why not. A job whose template dir another job is
/// using builds in scratch dirs instead of waiting.
fn reserve(state: &mut State, key: JobKey, template_id: String) -> Result<Placement, RejectReason> {
    if state.shutting_down {
        return Err(RejectReason::ShuttingDown);
    }
    let max = state.context.config.max_concurrent_jobs;
    let running = u32::try_from(state.running.len()).unwrap_or(u32::MAX);
    if running >= max {
        return Err(RejectReason::AtCapacity { running, max });
    }
    let busy = state.running.values().any(|(id, placement)| *placement == Placement::Warm && *id == template_id);
    let placement = if busy || !warm::is_safe_template_id(&template_id) { Placement::Scratch } else { Placement::Warm };
    state.running.insert(key, (template_id, placement));
    state.context.gauge.set_running_jobs(state.running.len());
    Ok(placement)
}

/// Frees the slot, records what the job left warm, and measures the warm
/// dirs for eviction. Idempotent: a job reported twice is freed once.
fn job_ended(myself: &ActorRef<Msg>, state: &mut State, key: JobKey, built: Option<(String, String)>) {
    let Some((template_id, placement)) = state.running.remove(&key) else { return };
    state.context.gauge.set_running_jobs(state.running.len());
    if state.running.is_empty() {
        for waiter in state.drain_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }
    if placement != Placement::Warm {
        return;
    }
    let record = state.warm.entry(template_id.clone()).or_default();
    record.last_used = warm::now_secs();
    record.builds.extend(built);
    let record = record.clone();
    let layout = state.context.layout.clone();
    let known: Vec<(String, u64)> = state.warm.iter().map(|(id, r)| (id.clone(), r.last_used)).collect();
    let me = myself.clone();
    tokio::task::spawn_blocking(move || {
        warm::write_record(&layout, &template_id, &record);
        let sizes = known.into_iter().map(|(id, last)| (id.clone(), warm::dir_size(&layout.warm_dir(&id)), last));
        let _ = me.send_message(Msg::Measured(sizes.collect()));
    });
}

/// Moves the least recently used warm dirs over the cap to the trash (a
/// rename, so no job can start in a half-deleted dir) and deletes them in
/// the background.
fn evict(state: &mut State, sizes: &[(String, u64, u64)]) {
    let in_use: BTreeSet<String> = state
        .running
        .values()
        .filter(|(_, placement)| *placement == Placement::Warm)
        .map(|(id, _)| id.clone())
        .collect();
    let victims = warm::eviction_plan(sizes, &in_use, state.context.config.warm_cache_max_bytes);
    if victims.is_empty() {
        return;
    }
    let layout = state.context.layout.clone();
    let mut moved = Vec::new();
    for id in victims {
        state.warm.remove(&id);
        let trash = layout.trash_root().join(format!("{id}-{}", warm::now_secs()));
        let _ = std::fs::create_dir_all(layout.trash_root());
        match std::fs::rename(layout.warm_dir(&id), &trash) {
            Ok(()) => {
                tracing::info!("evicted warm dir {id} (warm_cache_max_bytes)");
                moved.push(trash);
            }
            Err(error) => tracing::warn!("failed to evict warm dir {id}: {error}"),
        }
    }
    tokio::task::spawn_blocking(move || moved.iter().for_each(|dir| warm::remove_tree(dir)));
}

/// Asks the listener for the warm caches; empty if it did not answer in time.
pub(crate) async fn warm_caches(listener: &ActorRef<Msg>) -> Vec<WarmCache> {
    match listener.call(Msg::WarmCaches, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(caches)) => caches,
        _ => Vec::new(),
    }
}
