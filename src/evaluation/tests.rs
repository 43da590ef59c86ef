use std::collections::BTreeSet;

use proptest::prelude::*;

use super::model::Model;
use super::*;
use crate::ids::EnvironmentId;

/// The design's rule, written as plainly as possible: the reference the
/// engine is checked against.
fn reference(flag: &FlagRule, context: &Context) -> bool {
    let rule = &flag.rule;
    let targeted = context
        .user
        .as_ref()
        .is_some_and(|u| rule.users.contains(u))
        || context
            .organization
            .as_ref()
            .is_some_and(|o| rule.organizations.contains(o));
    !flag.archived
        && rule.enabled
        && (rule.mode == Mode::All || (rule.mode == Mode::Some && targeted))
}

fn users() -> Vec<UserId> {
    (0..5)
        .map(|i| UserId::parse(&format!("user_U{i}")).unwrap())
        .collect()
}

fn orgs() -> Vec<OrgId> {
    (0..4)
        .map(|i| OrgId::parse(&format!("org_O{i}")).unwrap())
        .collect()
}

fn flag_rule(i: usize) -> impl Strategy<Value = FlagRule> {
    (
        prop::sample::select(vec![Mode::None, Mode::Some, Mode::All]),
        any::<bool>(),
        prop::bool::weighted(0.15),
        prop::collection::btree_set(prop::sample::select(users()), 0..4),
        prop::collection::btree_set(prop::sample::select(orgs()), 0..3),
    )
        .prop_map(
            move |(mode, enabled, archived, users, organizations)| FlagRule {
                id: FlagId::parse(&format!("flag_F{i}")).unwrap(),
                slug: crate::validate::Slug::parse(&format!("flag-{i}")).unwrap(),
                archived,
                rule: Rule {
                    enabled,
                    mode,
                    users,
                    organizations,
                },
            },
        )
}

fn flags() -> impl Strategy<Value = Vec<FlagRule>> {
    (0usize..12).prop_flat_map(|n| (0..n).map(flag_rule).collect::<Vec<_>>())
}

fn context() -> impl Strategy<Value = Context> {
    (
        prop::option::of(prop::sample::select(users())),
        prop::option::of(prop::sample::select(orgs())),
    )
        .prop_map(|(user, organization)| Context { user, organization })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_engine_agrees_with_the_reference(flags in flags(), contexts in prop::collection::vec(context(), 1..6)) {
        let env = EnvironmentId::parse("env_E").unwrap();
        let model = Model::build(flags.iter().cloned().map(|f| (env.clone(), f)));
        let index = model.environment(&env);
        for context in &contexts {
            let expected: BTreeSet<String> = flags
                .iter()
                .filter(|f| reference(f, context))
                .map(|f| f.slug.to_string())
                .collect();
            let answer = model.evaluate(&env, context);
            prop_assert_eq!(answer.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(), expected);
            prop_assert!(answer.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
            let every: Vec<(String, Decision)> = index
                .map(|i| i.decide_live(context).map(|(f, d)| (f.slug.to_string(), d)).collect())
                .unwrap_or_default();
            let mut expected_every: Vec<(String, Decision)> = flags
                .iter()
                .filter(|f| !f.archived)
                .map(|f| (f.slug.to_string(), decide(f, context)))
                .collect();
            expected_every.sort_by(|a, b| a.0.cmp(&b.0));
            prop_assert_eq!(every, expected_every);
            for flag in &flags {
                let decision = decide(flag, context);
                prop_assert_eq!(decision.on, reference(flag, context));
                let explained = index.and_then(|i| i.decide(flag.slug.as_str(), context));
                prop_assert_eq!(explained, Some(decision));
                // A decision said to be the same for every context is.
                if let Some(free) = context_free(flag) {
                    prop_assert_eq!(free, decision);
                }
                // The reason agrees with the value.
                let reason_says_on = matches!(decision.reason, Reason::Static | Reason::TargetingMatch(_));
                prop_assert_eq!(reason_says_on, decision.on);
            }
        }
    }
}

#[test]
fn the_reasons_of_the_design() {
    let user = UserId::parse("user_U1").unwrap();
    let org = OrgId::parse("org_O1").unwrap();
    let flag = |mode, enabled, archived| FlagRule {
        id: FlagId::parse("flag_F").unwrap(),
        slug: crate::validate::Slug::parse("f").unwrap(),
        archived,
        rule: Rule {
            enabled,
            mode,
            users: [user.clone()].into(),
            organizations: [org.clone()].into(),
        },
    };
    let both = Context::new(Some(user.clone()), Some(org.clone()));
    let org_only = Context::new(None, Some(org.clone()));
    let nobody = Context::default();
    let reason = |f: &FlagRule, c: &Context| decide(f, c).reason;
    assert_eq!(
        reason(&flag(Mode::All, true, false), &nobody),
        Reason::Static
    );
    assert_eq!(
        reason(&flag(Mode::All, false, false), &both),
        Reason::Disabled
    );
    assert_eq!(
        reason(&flag(Mode::All, true, true), &both),
        Reason::Disabled
    );
    assert_eq!(
        reason(&flag(Mode::None, true, false), &both),
        Reason::Default
    );
    assert_eq!(
        reason(&flag(Mode::Some, true, false), &both),
        Reason::TargetingMatch(TargetKind::User)
    );
    assert_eq!(
        reason(&flag(Mode::Some, true, false), &org_only),
        Reason::TargetingMatch(TargetKind::Organization)
    );
    assert_eq!(
        reason(&flag(Mode::Some, true, false), &nobody),
        Reason::Default
    );
    assert!(!decide(&flag(Mode::None, true, false), &both).on);
}
