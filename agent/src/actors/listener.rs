//! The listener actor: accepts coordinator connections (one session actor
//! each), owns the agent-wide job slots and the registry of warm template
//! dirs, evicts warm dirs over the size cap, and drains on shutdown.
//!
//! Jobs of one template share its warm dir when they carry the same source
//! bundle: the first to claim it syncs the source tree, the others wait for
//! that sync and then build beside it, each target in its own target dir.
//! A job whose bundle differs from the one in use builds in scratch dirs.

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
    /// A job has its bundle (SHA-256 `bundle`) and asks where to put it:
    /// the answer may wait until another job's sync of the same bundle ends.
    ClaimSource {
        /// The job.
        key: JobKey,
        /// The bundle's digest.
        bundle: String,
        /// What the job does with its bundle.
        reply: RpcReplyPort<SourceClaim>,
    },
    /// A job whose claim went unanswered in time builds in a scratch dir
    /// instead: it is no user of the shared tree (whatever the listener
    /// answered meanwhile) and leaves nothing warm.
    SourceDeclined {
        /// The job.
        key: JobKey,
    },
    /// A job that was told [`SourceClaim::Sync`] finished syncing (or failed).
    SourceSynced {
        /// The job.
        key: JobKey,
        /// Whether the tree now holds its bundle.
        ok: bool,
    },
    /// A job ended (its slot is free); `built` is the (triple, toolchain) it
    /// built successfully, if it did.
    JobEnded {
        /// The job.
        key: JobKey,
        /// What it left warm.
        built: Option<(String, String)>,
    },
    /// A job's actor is gone (or never started): nothing of the job is in
    /// flight any more, its artifact included. The drain waits for this.
    JobGone {
        /// The job.
        key: JobKey,
    },
    /// The warm caches held, for capability reports.
    WarmCaches(RpcReplyPort<Vec<WarmCache>>),
    /// Sizes of the warm dirs (id, bytes, last use), from a measuring task.
    Measured(Vec<(String, u64, u64)>),
    /// Stop accepting and taking jobs; the reply comes once no job runs.
    Drain(RpcReplyPort<()>),
}

impl State {
    /// Answers the drain once no job runs and none has anything in flight.
    fn wake_drain_waiters(&mut self) {
        if self.running.is_empty() && self.alive.is_empty() {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }
}

/// What a job does with its bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceClaim {
    /// Sync it into the warm dir's source tree, then send
    /// [`Msg::SourceSynced`].
    Sync,
    /// The warm dir's source tree holds it already: build.
    Ready,
    /// Another bundle of the template is in use: build in scratch dirs.
    Scratch,
}

/// A template's warm source tree while jobs use it.
struct SharedSource {
    /// The bundle it holds (or is being synced to).
    bundle: String,
    /// Whether the sync is done.
    synced: bool,
    /// The job syncing it, while it does.
    syncing: Option<JobKey>,
    /// Jobs of the same bundle waiting for the sync.
    waiters: Vec<(JobKey, RpcReplyPort<SourceClaim>)>,
    /// Jobs using it.
    users: BTreeSet<JobKey>,
}

impl SharedSource {
    /// The sync in progress did not finish: the tree holds no whole bundle,
    /// and the next waiter, if any, syncs it instead.
    fn sync_failed(&mut self) {
        self.syncing = None;
        self.synced = false;
        if !self.waiters.is_empty() {
            let (next, waiter) = self.waiters.remove(0);
            self.syncing = Some(next);
            let _ = waiter.send(SourceClaim::Sync);
        }
    }
}

/// The listener's state.
pub(crate) struct State {
    context: Context,
    accept_task: Option<JoinHandle<()>>,
    next_session: u64,
    sessions: BTreeMap<ActorId, ActorRef<session::Msg>>,
    running: BTreeMap<JobKey, (String, Placement)>,
    /// Jobs granted a slot whose actor has not ended yet (a job frees its
    /// slot before its artifact is delivered; the drain waits for both).
    alive: BTreeSet<JobKey>,
    warm: BTreeMap<String, WarmRecord>,
    /// Warm source trees in use, by template.
    sources: BTreeMap<String, SharedSource>,
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
            alive: BTreeSet::new(),
            warm,
            sources: BTreeMap::new(),
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
            Msg::ClaimSource { key, bundle, reply } => claim_source(state, key, bundle, reply),
            Msg::SourceSynced { key, ok } => source_synced(state, key, ok),
            Msg::SourceDeclined { key } => {
                if let Some((template_id, placement)) = state.running.get_mut(&key) {
                    *placement = Placement::Scratch;
                    let template_id = template_id.clone();
                    release_source(state, &template_id, key);
                }
            }
            Msg::JobEnded { key, built } => job_ended(&myself, state, key, built),
            Msg::JobGone { key } => {
                state.alive.remove(&key);
                state.wake_drain_waiters();
            }
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
                // Every coordinator hears it at once, so none offers more work.
                let drain_secs = state.context.config.shutdown_drain_secs;
                for session in state.sessions.values() {
                    let _ = session.send_message(session::Msg::Draining { drain_secs });
                }
                state.drain_waiters.push(reply);
                state.wake_drain_waiters();
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

/// Grants a slot, or says why not. The job builds in its template's warm
/// dir unless the id cannot name one; whether it shares that dir with other
/// jobs is settled when its bundle arrives ([`Msg::ClaimSource`]).
fn reserve(state: &mut State, key: JobKey, template_id: String) -> Result<Placement, RejectReason> {
    if state.shutting_down {
        return Err(RejectReason::ShuttingDown);
    }
    let max = state.context.config.max_concurrent_jobs;
    let running = u32::try_from(state.running.len()).unwrap_or(u32::MAX);
    if running >= max {
        return Err(RejectReason::AtCapacity { running, max });
    }
    let placement = if warm::is_safe_template_id(&template_id) { Placement::Warm } else { Placement::Scratch };
    state.running.insert(key, (template_id, placement));
    state.alive.insert(key);
    state.context.gauge.set_running_jobs(state.running.len());
    Ok(placement)
}

/// Where job `key` puts `bundle`: beside the jobs using the same bundle of
/// its template (after their sync), else in scratch dirs when another bundle
/// is in use.
fn claim_source(state: &mut State, key: JobKey, bundle: String, reply: RpcReplyPort<SourceClaim>) {
    let Some((template_id, placement)) = state.running.get_mut(&key) else {
        let _ = reply.send(SourceClaim::Scratch);
        return;
    };
    if *placement != Placement::Warm {
        let _ = reply.send(SourceClaim::Scratch);
        return;
    }
    let source = state.sources.entry(template_id.clone()).or_insert_with(|| SharedSource {
        bundle: bundle.clone(),
        synced: false,
        syncing: None,
        waiters: Vec::new(),
        users: BTreeSet::new(),
    });
    if source.bundle != bundle {
        if source.users.is_empty() {
            // Nobody uses the old tree: this bundle replaces it.
            source.bundle = bundle;
            source.synced = false;
        } else {
            *placement = Placement::Scratch;
            let _ = reply.send(SourceClaim::Scratch);
            return;
        }
    }
    source.users.insert(key);
    if source.synced {
        let _ = reply.send(SourceClaim::Ready);
    } else if source.syncing.is_some() {
        source.waiters.push((key, reply));
    } else {
        source.syncing = Some(key);
        let _ = reply.send(SourceClaim::Sync);
    }
}

/// The sync of job `key` ended: the waiters build (or, when it failed, the
/// next of them syncs).
fn source_synced(state: &mut State, key: JobKey, ok: bool) {
    let Some((template_id, _)) = state.running.get(&key) else { return };
    let Some(source) = state.sources.get_mut(template_id) else { return };
    if source.syncing != Some(key) {
        return;
    }
    if ok {
        source.syncing = None;
        source.synced = true;
        for (_, waiter) in source.waiters.drain(..) {
            let _ = waiter.send(SourceClaim::Ready);
        }
    } else {
        source.sync_failed();
    }
}

/// `key` no longer uses the shared source tree of `template_id`: a sync it
/// was doing is handed on, and a tree nobody uses is forgotten (the next
/// job may bring other content and syncs again).
fn release_source(state: &mut State, template_id: &str, key: JobKey) {
    let Some(source) = state.sources.get_mut(template_id) else { return };
    source.users.remove(&key);
    source.waiters.retain(|(waiting, _)| *waiting != key);
    if source.syncing == Some(key) {
        // It stopped mid-sync (the tree may be half written).
        source.sync_failed();
    }
    if source.users.is_empty() {
        state.sources.remove(template_id);
    }
}

/// Frees the slot, records what the job left warm, and measures the warm
/// dirs for eviction. Idempotent: a job reported twice is freed once.
fn job_ended(myself: &ActorRef<Msg>, state: &mut State, key: JobKey, built: Option<(String, String)>) {
    let Some((template_id, placement)) = state.running.remove(&key) else { return };
    release_source(state, &template_id, key);
    state.context.gauge.set_running_jobs(state.running.len());
    state.wake_drain_waiters();
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
    let cache_dir = state.context.config.cache_dir();
    tokio::task::spawn_blocking(move || {
        warm::write_record(&layout, &template_id, &record);
        let sizes = known.into_iter().map(|(id, last)| (id.clone(), warm::dir_size(&layout.warm_dir(&id)), last));
        let sizes = sizes.chain(warm::target_dirs(&cache_dir));
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
    let cache_dir = state.context.config.cache_dir();
    let mut moved = Vec::new();
    for id in victims {
        let _ = std::fs::create_dir_all(layout.trash_root());
        if id.starts_with(warm::TARGET_DIR_ID) {
            let trash = layout.trash_root().join(format!("{}-{}", id.replace('/', "_"), warm::now_secs()));
            match warm::take_target_dir(&cache_dir, &id, &trash) {
                Ok(true) => {
                    tracing::info!("evicted target dir {id} (warm_cache_max_bytes)");
                    moved.push(trash);
                }
                Ok(false) => tracing::debug!("target dir {id} is in use: kept"),
                Err(error) => tracing::warn!("failed to evict target dir {id}: {error}"),
            }
            continue;
        }
        state.warm.remove(&id);
        let trash = layout.trash_root().join(format!("{id}-{}", warm::now_secs()));
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
