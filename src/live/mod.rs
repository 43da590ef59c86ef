//! The live model: everything the hot paths read, in memory, so that
//! checking a key, resolving the ids a caller gives and evaluating flags
//! cost no query.
//!
//! Readers take the current [`Snapshot`] (one atomic load) and never wait.
//! One applier per instance follows the change log ([`crate::changes`]): it
//! reads the rows after its revision, patches a copy of the snapshot (the
//! maps are persistent, so the copy shares everything the changes do not
//! touch) and publishes it. A full build happens only at start-up or when
//! the log no longer reaches back to the model's revision. The applier is
//! woken by this instance's writes, by PostgreSQL's `NOTIFY` for the
//! writes of other instances, and by a poll as the fallback; a write waits
//! until its own change is applied before it answers ([`LiveModel::reach`]).

pub mod directory;
pub mod source;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use diesel::connection::SimpleConnection;
use imbl::HashMap;

use crate::changes::{self, ChangeRow, Kind};
use crate::db::{DatabaseUrl, DbConn};
use crate::environments::api_keys::ApiKey;
use crate::environments::Environment;
use crate::error::Result;
use crate::evaluation::model::Model;
use crate::evaluation::{Context, FlagRule};
use crate::flags::FlagWithTags;
use crate::ids::{EnvironmentId, FlagId, OrgId, UserId};
use crate::time::Timestamp;
pub use directory::Directory;
use source::Scope;

/// One consistent state of everything the hot paths read. Cloning one is
/// cheap: every map is persistent.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// The change revision this snapshot reflects.
    pub revision: i64,
    /// Every flag's rule in every environment.
    pub model: Model,
    /// The ids callers may give for users and organizations.
    pub directory: Directory,
    environments: HashMap<EnvironmentId, Arc<Environment>>,
    /// Environment ids by client id.
    client_ids: HashMap<Arc<str>, EnvironmentId>,
    /// Live API keys by the SHA-256 of their secret.
    keys: HashMap<Arc<str>, Arc<ApiKey>>,
    /// Every flag (archived ones included) with its tags.
    flags: HashMap<FlagId, Arc<FlagWithTags>>,
}

impl Snapshot {
    /// The live key whose secret hashes to `hash`, with its environment.
    pub fn credential(&self, hash: &str) -> Option<(&Arc<ApiKey>, &Arc<Environment>)> {
        let key = self.keys.get(hash)?;
        let environment = self.environments.get(&key.environment_id)?;
        Some((key, environment))
    }

    pub fn environment(&self, id: &EnvironmentId) -> Option<&Arc<Environment>> {
        self.environments.get(id)
    }

    /// The environment whose client id is `client_id`.
    pub fn environment_by_client_id(&self, client_id: &str) -> Option<&Arc<Environment>> {
        self.client_ids
            .get(client_id)
            .and_then(|id| self.environments.get(id))
    }

    /// Every environment, in switcher order.
    pub fn environments(&self) -> Vec<&Arc<Environment>> {
        let mut all: Vec<&Arc<Environment>> = self.environments.values().collect();
        all.sort_by(|a, b| (a.position, &a.slug).cmp(&(b.position, &b.slug)));
        all
    }

    /// A flag with its tags, archived or not.
    pub fn flag(&self, id: &FlagId) -> Option<&Arc<FlagWithTags>> {
        self.flags.get(id)
    }

    /// The context a caller states by the ids it gives, resolved without a
    /// query: a subject the model does not know matches no target.
    pub fn context(&self, user: Option<&str>, organization: Option<&str>) -> Context {
        Context::new(
            user.and_then(|u| self.directory.user(u)),
            organization.and_then(|o| self.directory.organization(o)),
        )
    }

    /// How big the model is, for the metrics and the benchmark.
    pub fn sizes(&self) -> Sizes {
        let (users, organizations, memberships) = self.directory.sizes();
        let mut rules = 0;
        let mut targets = 0;
        for id in self.model.environment_ids() {
            if let Some(env) = self.model.environment(id) {
                for flag in env.all_flags() {
                    rules += 1;
                    targets += flag.rule.users.len() + flag.rule.organizations.len();
                }
            }
        }
        Sizes {
            flags: self.flags.len(),
            rules,
            targets,
            keys: self.keys.len(),
            external_users: users,
            external_organizations: organizations,
            memberships,
        }
    }

    fn set_environment(&mut self, env: Environment) {
        if let Some(old) = self.environments.get(&env.id) {
            self.client_ids.remove(old.client_id.as_str());
        }
        self.client_ids
            .insert(Arc::from(env.client_id.as_str()), env.id.clone());
        self.model.add_environment(&env.id);
        self.environments.insert(env.id.clone(), Arc::new(env));
    }

    fn remove_environment(&mut self, id: &EnvironmentId) {
        if let Some(old) = self.environments.remove(id) {
            self.client_ids.remove(old.client_id.as_str());
        }
        let flags: Vec<FlagId> = self
            .model
            .environment(id)
            .map(|env| env.all_flags().map(|f| f.id.clone()).collect())
            .unwrap_or_default();
        for flag in &flags {
            self.remove_rule(id, flag);
        }
        self.model.remove_environment(id);
        self.keys.retain(|_, key| key.environment_id != *id);
    }

    fn set_keys(&mut self, environment: &EnvironmentId, keys: Vec<ApiKey>) {
        self.keys
            .retain(|_, key| key.environment_id != *environment);
        for key in keys {
            self.keys
                .insert(Arc::from(key.secret_hash.as_str()), Arc::new(key));
        }
    }

    /// Sets one rule, counting the organizations rules target; those it is
    /// the first to target go into `newly`, to have their members loaded.
    fn set_rule(
        &mut self,
        environment: &EnvironmentId,
        flag: FlagRule,
        newly: &mut BTreeSet<OrgId>,
    ) {
        // Count the new targets before uncounting the old ones, so that an
        // organization the rule keeps never drops to zero on the way.
        for org in &flag.rule.organizations {
            if self.directory.target(org) {
                newly.insert(org.clone());
            }
        }
        let old = self.old_rule(environment, &flag.id);
        self.model.set_rule(environment, flag);
        for org in old.iter().flat_map(|f| f.rule.organizations.iter()) {
            self.directory.untarget(org);
        }
    }

    fn old_rule(&self, environment: &EnvironmentId, flag: &FlagId) -> Option<Arc<FlagRule>> {
        self.model
            .environment(environment)
            .and_then(|env| env.flag_by_id(flag))
            .cloned()
    }

    fn remove_rule(&mut self, environment: &EnvironmentId, flag: &FlagId) {
        let old = self.old_rule(environment, flag);
        self.model.remove_rule(environment, flag);
        for org in old.iter().flat_map(|f| f.rule.organizations.iter()) {
            self.directory.untarget(org);
        }
    }

    fn remove_flag(&mut self, flag: &FlagId) {
        let environments: Vec<EnvironmentId> = self.model.environment_ids().cloned().collect();
        for env in &environments {
            self.remove_rule(env, flag);
        }
        self.flags.remove(flag);
    }

    /// Sets rules (and learns the external ids of their targets); returns
    /// the organizations that no rule targeted before.
    fn set_rules(&mut self, loaded: source::Rules) -> BTreeSet<OrgId> {
        let mut newly = BTreeSet::new();
        for (environment, flag) in loaded.rules {
            self.set_rule(&environment, flag, &mut newly);
        }
        for (id, external) in loaded.external_ids {
            self.directory.set_external_id(&id, Some(&external));
        }
        newly
    }

    /// Sets the member lists of `orgs` from `members`.
    fn set_member_lists(
        &mut self,
        orgs: impl IntoIterator<Item = OrgId>,
        members: Vec<source::Member>,
    ) {
        let mut by_org: std::collections::HashMap<OrgId, Vec<directory::UserKey>> =
            orgs.into_iter().map(|org| (org, Vec::new())).collect();
        for (user, org) in members {
            if let Some(key) = directory::user_key(&user) {
                by_org.entry(org).or_default().push(key);
            }
        }
        for (org, keys) in by_org {
            self.directory.set_members(&org, keys);
        }
    }

    /// Loads the members of organizations that rules now target.
    fn load_members(&mut self, conn: &mut DbConn, orgs: BTreeSet<OrgId>) -> Result<()> {
        if orgs.is_empty() {
            return Ok(());
        }
        let orgs: Vec<OrgId> = orgs.into_iter().collect();
        let members = source::members(conn, Some(&orgs))?;
        self.set_member_lists(orgs, members);
        Ok(())
    }

    /// Everything, read afresh.
    fn build(conn: &mut DbConn, revision: i64) -> Result<Snapshot> {
        let mut next = Snapshot {
            revision,
            ..Default::default()
        };
        for env in source::environments(conn, None)? {
            next.set_environment(env);
        }
        for flag in source::flags(conn, None)? {
            next.flags.insert(flag.flag.id.clone(), Arc::new(flag));
        }
        let targeted = next.set_rules(source::rules(conn, Scope::All)?);
        let members = source::members(conn, None)?;
        next.set_member_lists(targeted, members);
        let mut keys: BTreeMap<EnvironmentId, Vec<ApiKey>> = BTreeMap::new();
        for key in source::keys(conn, None)? {
            keys.entry(key.environment_id.clone())
                .or_default()
                .push(key);
        }
        for (env, keys) in keys {
            next.set_keys(&env, keys);
        }
        Ok(next)
    }

    /// This snapshot with `changes` applied, reading only what they touch.
    fn patched(&self, conn: &mut DbConn, changes: &[ChangeRow], revision: i64) -> Result<Snapshot> {
        let mut touched = Touched::default();
        for change in changes {
            touched.add(change);
        }
        let mut next = self.clone();
        next.revision = revision;

        // Environments first: a new one brings a rule for every flag.
        if !touched.environments.is_empty() {
            let ids: Vec<EnvironmentId> = touched.environments.iter().cloned().collect();
            let found = source::environments(conn, Some(&ids))?;
            for id in &ids {
                if !found.iter().any(|e| &e.id == id) {
                    next.remove_environment(id);
                }
            }
            for env in found {
                let id = env.id.clone();
                let new = next.model.environment(&id).is_none();
                next.set_environment(env);
                if new {
                    let unloaded = next.set_rules(source::rules(conn, Scope::Environment(&id))?);
                    next.load_members(conn, unloaded)?;
                }
                touched.credentials.insert(id);
            }
        }

        // Flags as a whole, then single rules.
        let mut flag_ids: BTreeSet<FlagId> = touched.flags.clone();
        flag_ids.extend(touched.rules.iter().map(|(f, _)| f.clone()));
        if !flag_ids.is_empty() {
            let ids: Vec<FlagId> = flag_ids.into_iter().collect();
            let metas = source::flags(conn, Some(&ids))?;
            for id in &touched.flags {
                match metas.iter().find(|f| &f.flag.id == id) {
                    Some(flag) => {
                        next.flags.insert(id.clone(), Arc::new(flag.clone()));
                    }
                    None => next.remove_flag(id),
                }
            }
            let mut loaded = source::rules(conn, Scope::Flags(&ids))?;
            // Of the flags whose single rules changed, set only those rules:
            // the others keep their shared pointers.
            loaded.rules.retain(|(env, flag)| {
                touched.flags.contains(&flag.id)
                    || touched.rules.contains(&(flag.id.clone(), env.clone()))
            });
            for (flag, env) in &touched.rules {
                let present = loaded.rules.iter().any(|(e, f)| e == env && &f.id == flag);
                if !present && !touched.flags.contains(flag) {
                    next.remove_rule(env, flag);
                }
            }
            let unloaded = next.set_rules(loaded);
            next.load_members(conn, unloaded)?;
        }

        // Subjects deleted or given another external id.
        for id in &touched.subjects {
            match source::external_id(conn, id)? {
                Some(external) => next.directory.set_external_id(id, external.as_deref()),
                None => next.directory.forget(id),
            }
        }

        // Memberships of targeted organizations.
        if !touched.members.is_empty() {
            let users: Vec<UserId> = touched.members.iter().cloned().collect();
            let mut orgs: BTreeMap<UserId, Vec<OrgId>> =
                users.iter().map(|u| (u.clone(), Vec::new())).collect();
            for (user, org) in source::memberships_of(conn, &users)? {
                orgs.entry(user).or_default().push(org);
            }
            for (user, orgs) in orgs {
                next.directory.set_memberships(&user, &orgs);
            }
        }

        if !touched.credentials.is_empty() {
            let ids: Vec<EnvironmentId> = touched.credentials.iter().cloned().collect();
            let mut keys: BTreeMap<EnvironmentId, Vec<ApiKey>> =
                ids.iter().map(|id| (id.clone(), Vec::new())).collect();
            for key in source::keys(conn, Some(&ids))? {
                keys.entry(key.environment_id.clone())
                    .or_default()
                    .push(key);
            }
            for (env, keys) in keys {
                next.set_keys(&env, keys);
            }
        }
        Ok(next)
    }
}

/// How big a snapshot is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub flags: usize,
    pub rules: usize,
    pub targets: usize,
    pub keys: usize,
    pub external_users: usize,
    pub external_organizations: usize,
    pub memberships: usize,
}

/// What a batch of changes touches, each thing once.
#[derive(Debug, Default)]
struct Touched {
    rules: BTreeSet<(FlagId, EnvironmentId)>,
    flags: BTreeSet<FlagId>,
    environments: BTreeSet<EnvironmentId>,
    subjects: BTreeSet<String>,
    credentials: BTreeSet<EnvironmentId>,
    members: BTreeSet<UserId>,
    /// A change of everything: only a build will do.
    everything: bool,
}

impl Touched {
    fn add(&mut self, change: &ChangeRow) {
        let flag = change.flag_id.clone();
        let env = change.environment_id.clone();
        let subject = change.subject_id.clone();
        match change.kind {
            Kind::Rule => {
                if let (Some(f), Some(e)) = (flag, env) {
                    self.rules.insert((f, e));
                }
            }
            Kind::Flag => self.flags.extend(flag),
            Kind::Environment => self.environments.extend(env),
            Kind::Credentials => self.credentials.extend(env),
            Kind::Subject => self.subjects.extend(subject),
            Kind::Membership => self
                .members
                .extend(subject.as_deref().and_then(UserId::parse)),
            Kind::Everything => self.everything = true,
        }
    }
}

/// How a catch-up went, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Nothing new.
    Nothing,
    /// This many changes patched in.
    Patched(usize),
    /// Built afresh.
    Built,
}

/// A patch of more changes than this is not cheaper than a full build.
const MAX_PATCH: i64 = 20_000;

/// The instance's live model and what keeps it current.
pub struct LiveModel {
    current: ArcSwap<Snapshot>,
    /// The revision of the published snapshot, for writers to wait on.
    applied: tokio::sync::watch::Sender<i64>,
    /// Held while changes are applied, so they are applied once, in order.
    applying: Mutex<()>,
    /// Set (and signalled) to wake the applier.
    wake: (Mutex<bool>, Condvar),
    /// What the last catch-ups cost.
    pub stats: Mutex<ApplyStats>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Counters of the applier.
#[derive(Debug, Clone, Default)]
pub struct ApplyStats {
    pub builds: u64,
    pub patches: u64,
    pub changes_applied: u64,
    pub last_build: Duration,
    pub last_patch: Duration,
    pub build_seconds_total: f64,
    pub patch_seconds_total: f64,
    /// When the newest applied change was committed, and when it was applied.
    pub last_lag: Duration,
}

impl Default for LiveModel {
    fn default() -> Self {
        LiveModel::new(Arc::default())
    }
}

impl LiveModel {
    /// An empty model, reporting what it does to `metrics`.
    pub fn new(metrics: Arc<crate::metrics::Metrics>) -> Self {
        LiveModel {
            current: ArcSwap::from_pointee(Snapshot {
                revision: -1,
                ..Default::default()
            }),
            applied: tokio::sync::watch::Sender::new(-1),
            applying: Mutex::new(()),
            wake: (Mutex::new(false), Condvar::new()),
            stats: Mutex::new(ApplyStats::default()),
            metrics,
        }
    }
}

impl LiveModel {
    /// The model as of the last change this instance has applied.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn revision(&self) -> i64 {
        self.current.load().revision
    }

    /// Applies every change committed so far, on the caller's connection:
    /// a patch when the log reaches back to the model's revision, a build
    /// otherwise.
    pub fn catch_up(&self, conn: &mut DbConn) -> Result<Applied> {
        let _guard = self.applying.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let revision = changes::revision(conn)?;
        if revision == current.revision {
            return Ok(Applied::Nothing);
        }
        let started = Instant::now();
        let behind = revision - current.revision;
        let rows = if current.revision >= 0 && (1..=MAX_PATCH).contains(&behind) {
            changes::since(conn, current.revision, revision)?
        } else {
            Vec::new()
        };
        let contiguous = rows.len() as i64 == behind
            && rows
                .first()
                .is_some_and(|r| r.revision == current.revision + 1);
        // The revision was read first, so whatever the reads below see is
        // at least that new; a change committed meanwhile may already show,
        // and is applied (again, idempotently) by the next catch-up.
        let (next, applied) = if contiguous {
            (
                current.patched(conn, &rows, revision)?,
                Applied::Patched(rows.len()),
            )
        } else {
            (Snapshot::build(conn, revision)?, Applied::Built)
        };
        if applied == Applied::Built {
            let sizes = next.sizes();
            tracing::info!(
                revision,
                rules = sizes.rules,
                targets = sizes.targets,
                memberships = sizes.memberships,
                external_ids = sizes.external_users + sizes.external_organizations,
                keys = sizes.keys,
                millis = started.elapsed().as_millis() as u64,
                "built the live model"
            );
        }
        self.publish(next);
        let took = started.elapsed();
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        match applied {
            Applied::Built => self.metrics.model_build_seconds.observe(took.as_secs_f64()),
            Applied::Patched(n) => {
                self.metrics.model_patch_seconds.observe(took.as_secs_f64());
                self.metrics.model_changes_applied.inc_by(n as u64);
            }
            Applied::Nothing => {}
        }
        match applied {
            Applied::Built => {
                stats.builds += 1;
                stats.last_build = took;
                stats.build_seconds_total += took.as_secs_f64();
            }
            Applied::Patched(n) => {
                stats.patches += 1;
                stats.changes_applied += n as u64;
                stats.last_patch = took;
                stats.patch_seconds_total += took.as_secs_f64();
            }
            Applied::Nothing => {}
        }
        if let Some(last) = rows.last() {
            stats.last_lag = last.created_at.elapsed();
        }
        Ok(applied)
    }

    fn publish(&self, next: Snapshot) {
        let revision = next.revision;
        self.current.store(Arc::new(next));
        self.applied.send_replace(revision);
    }

    /// Waits until the model reflects `revision`, for at most `within`;
    /// false when it did not get there in time.
    pub async fn reach(&self, revision: i64, within: Duration) -> bool {
        let mut applied = self.applied.subscribe();
        let waited =
            tokio::time::timeout(within, applied.wait_for(|current| *current >= revision)).await;
        waited.is_ok_and(|changed| changed.is_ok())
    }

    /// Asks the applier to catch up now.
    pub fn wake(&self) {
        let (flag, signal) = &self.wake;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        signal.notify_one();
    }

    /// Waits for a wake-up for at most `timeout`; true when woken.
    fn wait(&self, timeout: Duration) -> bool {
        let (flag, signal) = &self.wake;
        let guard = flag.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut woken, _) = signal
            .wait_timeout_while(guard, timeout, |woken| !*woken)
            .unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *woken, false)
    }

    /// Starts the applier on its own thread, with a connection of its own
    /// (so it never waits for, or takes, one the requests need). It holds
    /// the model weakly and stops when the application is dropped.
    pub fn spawn_applier(
        self: &Arc<Self>,
        url: DatabaseUrl,
        settings: ApplierSettings,
    ) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("flagpole-model".into())
            .spawn(move || run_applier(weak, url, settings))
            .map(|_| ())
    }
}

/// How the applier follows the change log.
#[derive(Debug, Clone, Copy)]
pub struct ApplierSettings {
    /// How often the change log is read when nothing woke the applier.
    pub poll_interval: Duration,
    /// How long changes are kept in the log.
    pub retention: Duration,
}

/// How often the applier looks for a PostgreSQL notification: no query,
/// only a read of what the server has already sent.
const LISTEN_TICK: Duration = Duration::from_millis(5);

fn run_applier(weak: Weak<LiveModel>, url: DatabaseUrl, settings: ApplierSettings) {
    let mut follower = Follower::new(url);
    let mut last_read = Instant::now();
    let mut last_prune: Option<Instant> = None;
    loop {
        let tick = if follower.is_listening() {
            LISTEN_TICK
        } else {
            settings.poll_interval
        };
        let Some(model) = weak.upgrade() else { break };
        let woken = model.wait(tick);
        let notified = follower.notified();
        if !(woken || notified || last_read.elapsed() >= settings.poll_interval) {
            continue;
        }
        last_read = Instant::now();
        let Some(conn) = follower.connection() else {
            continue;
        };
        let mut result = model.catch_up(conn).map(|_| ());
        if result.is_ok() && last_prune.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            last_prune = Some(Instant::now());
            result = changes::prune(conn, Timestamp::now().minus(settings.retention)).map(|_| ());
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "bringing the live model up to date failed; retrying");
            follower.reset();
        }
    }
}

/// The applier's own connection; on PostgreSQL it also listens for
/// notifications of new changes. Reconnects after a failure, and meanwhile
/// the poll carries on.
struct Follower {
    url: DatabaseUrl,
    conn: Option<DbConn>,
    listening: bool,
    retry_at: Instant,
}

impl Follower {
    fn new(url: DatabaseUrl) -> Self {
        let mut follower = Follower {
            url,
            conn: None,
            listening: false,
            retry_at: Instant::now(),
        };
        follower.connection();
        follower
    }

    /// The connection, opened (and listening) if it was not.
    fn connection(&mut self) -> Option<&mut DbConn> {
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            match crate::db::connect(&self.url) {
                Ok(mut conn) => {
                    self.listening = match &mut conn {
                        DbConn::Pg(pg) => {
                            match pg.batch_execute(&format!("LISTEN {}", changes::CHANNEL)) {
                                Ok(()) => true,
                                Err(e) => {
                                    tracing::warn!(error = %e, "listening for changes failed; polling instead");
                                    false
                                }
                            }
                        }
                        DbConn::Sqlite(_) => false,
                    };
                    self.conn = Some(conn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the live model cannot reach the database; retrying");
                    self.retry_at = Instant::now() + Duration::from_secs(2);
                }
            }
        }
        self.conn.as_mut()
    }

    fn reset(&mut self) {
        self.conn = None;
        self.listening = false;
        self.retry_at = Instant::now() + Duration::from_secs(1);
    }

    fn is_listening(&self) -> bool {
        self.listening
    }

    /// Whether a notification arrived since the last call (or the
    /// connection broke, so that something may have been missed).
    fn notified(&mut self) -> bool {
        if !self.listening {
            return false;
        }
        let Some(DbConn::Pg(pg)) = &mut self.conn else {
            return false;
        };
        let mut any = false;
        let mut failed = None;
        for notification in pg.notifications_iter() {
            match notification {
                Ok(_) => any = true,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            tracing::warn!(error = %e, "the change listener's connection failed");
            self.reset();
            return true;
        }
        any
    }
}
