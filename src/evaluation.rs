//! The evaluation engine: which flags are on for a user in an organization.
//!
//! A flag is on in an environment when its rule there is enabled and either
//! the mode is All, or the mode is Some and the user or the organization is a
//! target. None and archived flags are off. The index below holds, per
//! environment, only what can be on, keyed so that one evaluation costs in
//! proportion to its answer. It knows nothing of HTTP or SQL.

use std::collections::HashMap;
use std::sync::Arc;

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

/// What is on in one environment.
#[derive(Debug, Default, Clone)]
pub struct EnvironmentIndex {
    on_for_all: Vec<Arc<str>>,
    by_user: HashMap<String, Vec<Arc<str>>>,
    by_organization: HashMap<String, Vec<Arc<str>>>,
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
            if !rule.enabled || rule.archived {
                continue;
            }
            let env = environments.entry(rule.environment_id).or_default();
            let slug: Arc<str> = Arc::from(rule.slug.as_str());
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
}
