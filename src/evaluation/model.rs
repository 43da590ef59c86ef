//! What evaluation reads, per environment: every flag's rule by slug, and an
//! index of the flags that might be on for a subject, so that evaluating a
//! context costs in proportion to its answer, not to the number of flags.
//! The index is a superset; [`decide`] confirms each candidate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{decide, named_subjects, on_for_anyone, Context, Decision, FlagRule};
use crate::ids::EnvironmentId;

/// Every environment's flags.
#[derive(Debug, Default, Clone)]
pub struct Model {
    environments: HashMap<EnvironmentId, EnvironmentModel>,
}

/// One environment's flags and index.
#[derive(Debug, Default, Clone)]
pub struct EnvironmentModel {
    /// Every flag, archived ones included, by slug.
    flags: BTreeMap<String, Arc<FlagRule>>,
    /// Flags that may be on whoever asks (mode All, enabled), by slug.
    for_anyone: BTreeSet<String>,
    /// Flags that may be on for a subject because they name it, by the
    /// subject's Flagpole id.
    by_subject: HashMap<String, BTreeSet<String>>,
}

impl Model {
    /// Builds the model from every flag's rule in every environment.
    pub fn build(rules: impl IntoIterator<Item = (EnvironmentId, FlagRule)>) -> Self {
        let mut model = Model::default();
        for (environment, flag) in rules {
            model
                .environments
                .entry(environment)
                .or_default()
                .insert(Arc::new(flag));
        }
        model
    }

    pub fn environment(&self, id: &EnvironmentId) -> Option<&EnvironmentModel> {
        self.environments.get(id)
    }

    /// The sorted slugs on for `context` in an environment.
    pub fn evaluate(&self, environment: &EnvironmentId, context: &Context) -> Vec<String> {
        self.environment(environment)
            .map(|env| env.evaluate(context))
            .unwrap_or_default()
    }
}

impl EnvironmentModel {
    fn insert(&mut self, flag: Arc<FlagRule>) {
        let slug = flag.slug.to_string();
        if on_for_anyone(&flag) {
            self.for_anyone.insert(slug.clone());
        }
        if !flag.archived && flag.rule.enabled {
            let (users, organizations) = named_subjects(&flag.rule);
            let ids = users
                .into_iter()
                .map(|u| u.as_str())
                .chain(organizations.into_iter().map(|o| o.as_str()));
            for id in ids {
                self.by_subject
                    .entry(id.to_string())
                    .or_default()
                    .insert(slug.clone());
            }
        }
        self.flags.insert(slug, flag);
    }

    /// The flag with this slug, archived or not.
    pub fn flag(&self, slug: &str) -> Option<&FlagRule> {
        self.flags.get(slug).map(Arc::as_ref)
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

    /// The sorted slugs of the flags that are on for `context`.
    pub fn evaluate(&self, context: &Context) -> Vec<String> {
        let empty = BTreeSet::new();
        let named = |id: Option<&str>| id.and_then(|id| self.by_subject.get(id)).unwrap_or(&empty);
        let by_user = named(context.user.as_ref().map(|u| u.as_str()));
        let by_org = named(context.organization.as_ref().map(|o| o.as_str()));
        let mut candidates: BTreeSet<&String> = self.for_anyone.iter().collect();
        candidates.extend(by_user);
        candidates.extend(by_org);
        candidates
            .into_iter()
            .filter(|slug| self.decide(slug, context).is_some_and(|d| d.on))
            .cloned()
            .collect()
    }
}
