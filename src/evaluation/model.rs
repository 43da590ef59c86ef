//! What evaluation reads, per environment: every flag's rule by slug, and an
//! index of the flags that might be on for a subject, so that evaluating a
//! context costs in proportion to its answer, not to the number of flags.
//! The index is a superset; [`decide`] confirms each candidate.
//!
//! The maps are persistent (`imbl`): cloning a model is O(1) and a change
//! copies only the paths it touches, so a new snapshot with one rule changed
//! costs in proportion to that rule's targets, while readers keep the old
//! one for as long as they hold it.

use std::sync::Arc;

use imbl::{HashMap, OrdMap};

use crate::small_set::SmallSet;

use super::{context_free, decide, named_subjects, on_for_anyone, Context, Decision, FlagRule};
use crate::ids::{EnvironmentId, FlagId};

/// Every environment's flags.
#[derive(Debug, Default, Clone)]
pub struct Model {
    environments: HashMap<EnvironmentId, EnvironmentModel>,
}

/// One environment's flags and index.
#[derive(Debug, Default, Clone)]
pub struct EnvironmentModel {
    /// Every flag, archived ones included, by slug.
    flags: OrdMap<Arc<str>, Arc<FlagRule>>,
    /// The slug of each flag, by id.
    slugs: HashMap<FlagId, Arc<str>>,
    /// Flags on for every context (their decision does not read it), by
    /// slug: an answer copies these without deciding them again.
    always_on: OrdMap<Arc<str>, ()>,
    /// Flags that may be on for a context that names nobody they target,
    /// and whose decision reads the context, by slug: decided per request.
    for_anyone: OrdMap<Arc<str>, Arc<FlagRule>>,
    /// Flags that may be on for a subject because they name it, by the
    /// subject's Flagpole id.
    by_subject: HashMap<Arc<str>, SmallSet<Candidate>>,
}

impl Model {
    /// Builds the model from every flag's rule in every environment.
    pub fn build(rules: impl IntoIterator<Item = (EnvironmentId, FlagRule)>) -> Self {
        let mut model = Model::default();
        for (environment, flag) in rules {
            model.set_rule(&environment, flag);
        }
        model
    }

    pub fn environment(&self, id: &EnvironmentId) -> Option<&EnvironmentModel> {
        self.environments.get(id)
    }

    /// The ids of the environments the model knows.
    pub fn environment_ids(&self) -> impl Iterator<Item = &EnvironmentId> + '_ {
        self.environments.keys()
    }

    /// The sorted slugs on for `context` in an environment.
    pub fn evaluate(&self, environment: &EnvironmentId, context: &Context) -> Vec<&str> {
        self.environment(environment)
            .map(|env| env.evaluate(context))
            .unwrap_or_default()
    }

    /// Makes sure an environment exists, with no flags yet.
    pub fn add_environment(&mut self, id: &EnvironmentId) {
        self.environments.entry(id.clone()).or_default();
    }

    /// Forgets an environment and its rules.
    pub fn remove_environment(&mut self, id: &EnvironmentId) {
        self.environments.remove(id);
    }

    /// Sets one flag's rule in one environment, replacing what was there.
    pub fn set_rule(&mut self, environment: &EnvironmentId, flag: FlagRule) {
        let env = self.environments.entry(environment.clone()).or_default();
        env.remove(&flag.id);
        env.insert(Arc::new(flag));
    }

    /// Forgets one flag's rule in one environment.
    pub fn remove_rule(&mut self, environment: &EnvironmentId, flag: &FlagId) {
        if let Some(env) = self.environments.get_mut(environment) {
            env.remove(flag);
        }
    }

    /// Forgets a flag in every environment.
    pub fn remove_flag(&mut self, flag: &FlagId) {
        for (_, env) in self.environments.iter_mut() {
            env.remove(flag);
        }
    }
}

/// A flag the index offers as a candidate: the rule itself, so that
/// evaluating needs no lookup by slug; ordered by slug.
#[derive(Debug, Clone)]
struct Candidate(Arc<FlagRule>);

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.0.slug.as_str() == other.0.slug.as_str()
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.slug.as_str().cmp(other.0.slug.as_str())
    }
}

impl EnvironmentModel {
    fn insert(&mut self, flag: Arc<FlagRule>) {
        let slug: Arc<str> = Arc::from(flag.slug.as_str());
        match context_free(&flag) {
            Some(decision) if decision.on => {
                self.always_on.insert(slug.clone(), ());
            }
            Some(_) => {}
            None if on_for_anyone(&flag) => {
                self.for_anyone.insert(slug.clone(), flag.clone());
            }
            None => {}
        }
        if indexed(&flag) {
            for id in subject_ids(&flag) {
                let candidates = self.by_subject.entry(Arc::from(id)).or_default();
                *candidates = candidates.with(Candidate(flag.clone()));
            }
        }
        self.slugs.insert(flag.id.clone(), slug.clone());
        self.flags.insert(slug, flag);
    }

    fn remove(&mut self, id: &FlagId) {
        let Some(slug) = self.slugs.remove(id) else {
            return;
        };
        let Some(flag) = self.flags.remove(&slug) else {
            return;
        };
        self.always_on.remove(&slug);
        self.for_anyone.remove(&slug);
        if !indexed(&flag) {
            return;
        }
        let gone = Candidate(flag.clone());
        for subject in subject_ids(&flag) {
            let now_empty = match self.by_subject.get_mut(subject) {
                Some(candidates) => {
                    *candidates = candidates.without(&gone);
                    candidates.is_empty()
                }
                None => false,
            };
            if now_empty {
                self.by_subject.remove(subject);
            }
        }
    }

    /// The flag with this slug, archived or not.
    pub fn flag(&self, slug: &str) -> Option<&FlagRule> {
        self.flags.get(slug).map(Arc::as_ref)
    }

    /// The flag with this id, archived or not.
    pub fn flag_by_id(&self, id: &FlagId) -> Option<&Arc<FlagRule>> {
        self.slugs.get(id).and_then(|slug| self.flags.get(slug))
    }

    /// Every flag, archived ones included, by slug, as shared pointers:
    /// two snapshots hold the same pointer for a rule neither changed.
    pub fn all_flags(&self) -> impl Iterator<Item = &Arc<FlagRule>> + '_ {
        self.flags.values()
    }

    /// Every flag that is not archived, by slug.
    pub fn live_flags(&self) -> impl Iterator<Item = &FlagRule> + '_ {
        self.flags
            .values()
            .map(Arc::as_ref)
            .filter(|flag| !flag.archived)
    }

    /// The value of the flag with this slug for `context`, and why; `None`
    /// when no flag has this slug.
    pub fn decide(&self, slug: &str, context: &Context) -> Option<Decision> {
        self.flag(slug).map(|flag| decide(flag, context))
    }

    /// The flags the index files under the context's subjects: those whose
    /// rule names the user or the organization (a flag may come twice).
    fn named<'a>(&'a self, context: &Context) -> impl Iterator<Item = &'a Arc<FlagRule>> + 'a {
        let named = |id: Option<&str>| id.and_then(|id| self.by_subject.get(id));
        [
            named(context.user.as_ref().map(|u| u.as_str())),
            named(context.organization.as_ref().map(|o| o.as_str())),
        ]
        .into_iter()
        .flatten()
        .flat_map(|candidates| candidates.iter().map(|c| &c.0))
    }

    /// The sorted slugs of the flags that are on for `context`, borrowed
    /// from the model (an answer allocates one vector, not a string a flag).
    pub fn evaluate(&self, context: &Context) -> Vec<&str> {
        // The flags on for every context, already in slug order…
        let mut on: Vec<&str> =
            Vec::with_capacity(self.always_on.len() + self.for_anyone.len() + 8);
        on.extend(self.always_on.keys().map(|slug| &**slug));
        // …and, put in their places, those the one decision gives this
        // context: the flags that may be on for anyone, and the few that
        // name the context's subjects (each decided once).
        let candidates = self.for_anyone.values().chain(self.named(context));
        for flag in candidates {
            let slug = flag.slug.as_str();
            if let Err(at) = on.binary_search(&slug) {
                if decide(flag, context).on {
                    on.insert(at, slug);
                }
            }
        }
        on
    }

    /// Every flag that is not archived, in slug order, with its decision
    /// for `context`. A flag whose rule names neither of the context's
    /// subjects is decided for a context that names nobody: the index files
    /// every flag under each subject it names, so that is the same decision,
    /// and it needs no look-up in the flag's targets.
    pub fn decide_live<'a>(
        &'a self,
        context: &'a Context,
    ) -> impl Iterator<Item = (&'a FlagRule, Decision)> + 'a {
        let mut named: Vec<usize> = self
            .named(context)
            .map(|flag| Arc::as_ptr(flag) as usize)
            .collect();
        named.sort_unstable();
        let nobody = Context::default();
        self.live_flags().map(move |flag| {
            let named = named
                .binary_search(&(flag as *const FlagRule as usize))
                .is_ok();
            (flag, decide(flag, if named { context } else { &nobody }))
        })
    }
}

/// Whether the index files a flag under the subjects it names: only while
/// it can be on for them.
fn indexed(flag: &FlagRule) -> bool {
    !flag.archived && flag.rule.enabled
}

/// The Flagpole ids of the subjects a flag's rule names.
fn subject_ids(flag: &FlagRule) -> impl Iterator<Item = &str> + '_ {
    let (users, organizations) = named_subjects(&flag.rule);
    users
        .into_iter()
        .map(|u| u.as_str())
        .chain(organizations.into_iter().map(|o| o.as_str()))
}
