//! The evaluation engine: which flags are on for a user in an organization.
//!
//! A flag is on in an environment when its rule there is enabled and either
//! the mode is All, or the mode is Some and the user or the organization is a
//! target. None and archived flags are off. The index below holds, per
//! environment, only what can be on, keyed so that one evaluation costs in
//! proportion to its answer. It also keeps every flag's mode and state, so
//! an answer can say why (the reasons of OpenFeature's remote evaluation).
//! It knows nothing of HTTP or SQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::flags::Mode;

/// One rule as the engine needs it.
#[derive(Debug, Clone)]
pub struct RuleFacts {
    pub environment_id: String,
    pub slug: String,
    pub enabled: bool,
    pub archived: bool,
    /// "none", "some" or "all".
    pub mode: String,
    pub user_targets: Vec<String>,
    pub organization_targets: Vec<String>,
}

/// A flag's rule in one environment, as far as explaining a value needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagState {
    pub mode: Mode,
    pub enabled: bool,
    pub archived: bool,
}

/// Why a flag has its value in one evaluation (OpenFeature's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Mode Some, and the user or the organization is a target.
    TargetingMatch,
    /// Mode All.
    Static,
    /// The rule is off in the environment, or the flag is archived.
    Disabled,
    /// Enabled, but mode None, or mode Some without a matching target.
    Default,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Static => "STATIC",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
        }
    }
}

/// What is on in one environment.
#[derive(Debug, Default, Clone)]
pub struct EnvironmentIndex {
    on_for_all: Vec<Arc<str>>,
    by_user: HashMap<String, Vec<Arc<str>>>,
    by_organization: HashMap<String, Vec<Arc<str>>>,
    /// Every flag's rule here, archived flags included, by slug.
    flags: BTreeMap<Arc<str>, FlagState>,
}

impl EnvironmentIndex {
    /// The sorted slugs on for `user` in `organization`.
    pub fn evaluate(&self, user: Option<&str>, organization: Option<&str>) -> Vec<String> {
        let empty: &[Arc<str>] = &[];
        let by_user = user
            .and_then(|u| self.by_user.get(u))
            .map_or(empty, Vec::as_slice);
        let by_org = organization
            .and_then(|o| self.by_organization.get(o))
            .map_or(empty, Vec::as_slice);
        merge_sorted(&[&self.on_for_all, by_user, by_org])
    }

    pub fn is_on(&self, slug: &str, user: Option<&str>, organization: Option<&str>) -> bool {
        let contains = |list: Option<&Vec<Arc<str>>>| {
            list.is_some_and(|l| l.binary_search_by(|s| (**s).cmp(slug)).is_ok())
        };
        contains(Some(&self.on_for_all))
            || contains(user.and_then(|u| self.by_user.get(u)))
            || contains(organization.and_then(|o| self.by_organization.get(o)))
    }

    /// The rule of the flag with this slug, if the flag exists.
    pub fn flag(&self, slug: &str) -> Option<FlagState> {
        self.flags.get(slug).copied()
    }

    /// Every flag that is not archived, by slug.
    pub fn live_flags(&self) -> impl Iterator<Item = &str> + '_ {
        self.flags
            .iter()
            .filter(|(_, state)| !state.archived)
            .map(|(slug, _)| &**slug)
    }

    /// Whether a flag is on for `user` in `organization`, and why; `None`
    /// when no flag has this slug. Agrees with [`Self::is_on`].
    pub fn explain(
        &self,
        slug: &str,
        user: Option<&str>,
        organization: Option<&str>,
    ) -> Option<(bool, Reason)> {
        let state = self.flag(slug)?;
        Some(if state.archived || !state.enabled {
            (false, Reason::Disabled)
        } else {
            match state.mode {
                Mode::All => (true, Reason::Static),
                Mode::None => (false, Reason::Default),
                Mode::Some if self.is_on(slug, user, organization) => {
                    (true, Reason::TargetingMatch)
                }
                Mode::Some => (false, Reason::Default),
            }
        })
    }
}

/// Merges sorted lists into one sorted list without duplicates.
fn merge_sorted(lists: &[&[Arc<str>]]) -> Vec<String> {
    let mut cursors = vec![0usize; lists.len()];
    let mut out: Vec<String> = Vec::new();
    loop {
        let mut smallest: Option<&str> = None;
        for (i, list) in lists.iter().enumerate() {
            if let Some(s) = list.get(cursors[i]) {
                if smallest.is_none_or(|m| &**s < m) {
                    smallest = Some(s);
                }
            }
        }
        let Some(next) = smallest else { break };
        for (i, list) in lists.iter().enumerate() {
            if list.get(cursors[i]).is_some_and(|s| &**s == next) {
                cursors[i] += 1;
            }
        }
        out.push(next.to_string());
    }
    out
}

/// Every environment's index, built from the rules of all flags.
#[derive(Debug, Default, Clone)]
pub struct Index {
    environments: HashMap<String, EnvironmentIndex>,
}

impl Index {
    pub fn build(rules: impl IntoIterator<Item = RuleFacts>) -> Self {
        let mut environments: HashMap<String, EnvironmentIndex> = HashMap::new();
        for rule in rules {
            let env = environments.entry(rule.environment_id).or_default();
            let slug: Arc<str> = Arc::from(rule.slug.as_str());
            env.flags.insert(
                slug.clone(),
                FlagState {
                    mode: Mode::parse(&rule.mode).unwrap_or(Mode::None),
                    enabled: rule.enabled,
                    archived: rule.archived,
                },
            );
            if !rule.enabled || rule.archived {
                continue;
            }
            match rule.mode.as_str() {
                "all" => env.on_for_all.push(slug),
                "some" => {
                    for user in rule.user_targets {
                        env.by_user.entry(user).or_default().push(slug.clone());
                    }
                    for org in rule.organization_targets {
                        env.by_organization
                            .entry(org)
                            .or_default()
                            .push(slug.clone());
                    }
                }
                _ => {}
            }
        }
        for env in environments.values_mut() {
            env.on_for_all.sort();
            env.on_for_all.dedup();
            for list in env
                .by_user
                .values_mut()
                .chain(env.by_organization.values_mut())
            {
                list.sort();
                list.dedup();
            }
        }
        Index { environments }
    }

    pub fn environment(&self, environment_id: &str) -> Option<&EnvironmentIndex> {
        self.environments.get(environment_id)
    }

    /// The sorted slugs on for `user` in `organization` in an environment.
    pub fn evaluate(
        &self,
        environment_id: &str,
        user: Option<&str>,
        organization: Option<&str>,
    ) -> Vec<String> {
        self.environment(environment_id)
            .map(|e| e.evaluate(user, organization))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(slug: &str, mode: &str, enabled: bool, users: &[&str], orgs: &[&str]) -> RuleFacts {
        RuleFacts {
            environment_id: "env_a".into(),
            slug: slug.into(),
            enabled,
            archived: false,
            mode: mode.into(),
            user_targets: users.iter().map(|s| s.to_string()).collect(),
            organization_targets: orgs.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_rule_of_the_design_holds() {
        let mut archived = rule("archived-all", "all", true, &[], &[]);
        archived.archived = true;
        let index = Index::build(vec![
            rule("for-all", "all", true, &[], &[]),
            rule("disabled-all", "all", false, &[], &[]),
            rule("none-mode", "none", true, &["u1"], &["o1"]),
            rule("beta", "some", true, &["u1"], &["o2"]),
            rule("org-only", "some", true, &[], &["o1"]),
            archived,
        ]);
        assert_eq!(
            index.evaluate("env_a", Some("u1"), Some("o1")),
            vec!["beta", "for-all", "org-only"]
        );
        assert_eq!(
            index.evaluate("env_a", Some("u2"), Some("o2")),
            vec!["beta", "for-all"]
        );
        assert_eq!(index.evaluate("env_a", Some("u2"), None), vec!["for-all"]);
        assert_eq!(
            index.evaluate("env_b", Some("u1"), Some("o1")),
            Vec::<String>::new()
        );
        assert!(index
            .environment("env_a")
            .unwrap()
            .is_on("org-only", None, Some("o1")));
        assert!(!index
            .environment("env_a")
            .unwrap()
            .is_on("none-mode", Some("u1"), Some("o1")));
    }

    #[test]
    fn explain_gives_the_value_and_the_reason() {
        let mut archived = rule("archived-all", "all", true, &[], &[]);
        archived.archived = true;
        let index = Index::build(vec![
            rule("for-all", "all", true, &[], &[]),
            rule("disabled-all", "all", false, &[], &[]),
            rule("none-mode", "none", true, &["u1"], &["o1"]),
            rule("beta", "some", true, &["u1"], &["o2"]),
            rule("disabled-some", "some", false, &["u1"], &[]),
            archived,
        ]);
        let env = index.environment("env_a").unwrap();
        let explain = |slug, user, org| env.explain(slug, user, org);
        assert_eq!(explain("for-all", None, None), Some((true, Reason::Static)));
        assert_eq!(
            explain("disabled-all", Some("u1"), None),
            Some((false, Reason::Disabled))
        );
        assert_eq!(
            explain("archived-all", Some("u1"), None),
            Some((false, Reason::Disabled))
        );
        assert_eq!(
            explain("disabled-some", Some("u1"), None),
            Some((false, Reason::Disabled))
        );
        assert_eq!(
            explain("none-mode", Some("u1"), Some("o1")),
            Some((false, Reason::Default))
        );
        assert_eq!(
            explain("beta", Some("u1"), None),
            Some((true, Reason::TargetingMatch))
        );
        assert_eq!(
            explain("beta", Some("u2"), Some("o2")),
            Some((true, Reason::TargetingMatch))
        );
        assert_eq!(
            explain("beta", Some("u2"), Some("o1")),
            Some((false, Reason::Default))
        );
        assert_eq!(explain("missing", Some("u1"), None), None);
        assert_eq!(
            env.live_flags().collect::<Vec<_>>(),
            vec![
                "beta",
                "disabled-all",
                "disabled-some",
                "for-all",
                "none-mode"
            ]
        );
        for slug in env.live_flags() {
            for (user, org) in [
                (Some("u1"), Some("o1")),
                (Some("u2"), Some("o2")),
                (None, None),
            ] {
                assert_eq!(
                    explain(slug, user, org).unwrap().0,
                    env.is_on(slug, user, org),
                    "{slug}"
                );
            }
        }
    }
}
