//! Evaluation: whether a flag is on for a context, and why.
//!
//! What a rule means is decided in one place, [`decide`]. Every surface asks
//! it: the token's `feature_flags` claim, `/api/v1/evaluate`, OFREP, the
//! WorkOS runtime rule set and the explainer. The [`model`] keeps, per
//! environment, every flag's rule and an index of which flags a subject
//! might get; the index only narrows the candidates, `decide` has the last
//! word. Nothing here knows HTTP or SQL; `crate::live` keeps the model
//! up to date.

pub mod model;

use std::collections::BTreeSet;

use crate::ids::{FlagId, OrgId, UserId};
use crate::validate::Slug;

crate::text_enum! {
    /// Who gets a flag in one environment: nobody, the targets, or everybody.
    pub enum Mode {
        None = "none",
        Some = "some",
        All = "all",
    }
}

impl Mode {
    pub fn label(self) -> &'static str {
        match self {
            Mode::None => "None",
            Mode::Some => "Some",
            Mode::All => "All",
        }
    }
}

crate::text_enum! {
    /// What a target of a rule is.
    pub enum TargetKind {
        User = "user",
        Organization = "organization",
    }
}

impl TargetKind {
    /// Users and organizations are told apart by their id's prefix.
    pub fn of_id(id: &str) -> Option<TargetKind> {
        if UserId::parse(id).is_some() {
            Some(TargetKind::User)
        } else if OrgId::parse(id).is_some() {
            Some(TargetKind::Organization)
        } else {
            None
        }
    }
}

/// A flag's rule in one environment, as evaluation reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub enabled: bool,
    pub mode: Mode,
    /// Targeted users; they count in mode Some only, and are kept whatever
    /// the mode, so switching Some → All → Some loses nothing.
    pub users: BTreeSet<UserId>,
    pub organizations: BTreeSet<OrgId>,
}

// Not derived: `text_enum!` declares the enum.
#[allow(clippy::derivable_impls)]
impl Default for Mode {
    fn default() -> Self {
        Mode::None
    }
}

/// A flag with its rule in one environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRule {
    pub id: FlagId,
    pub slug: Slug,
    pub archived: bool,
    pub rule: Rule,
}

/// Who a flag is evaluated for. Ids are Flagpole's; a subject the caller
/// named but Flagpole does not know is `None` (it matches no target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    pub user: Option<UserId>,
    pub organization: Option<OrgId>,
}

impl Context {
    pub fn new(user: Option<UserId>, organization: Option<OrgId>) -> Self {
        Context { user, organization }
    }
}

/// Why a flag has its value (OpenFeature's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Mode Some, and the user (or the organization) is a target.
    TargetingMatch(TargetKind),
    /// Mode All.
    Static,
    /// The rule is off in the environment, or the flag is archived.
    Disabled,
    /// On in the environment, but mode None, or mode Some without a match.
    Default,
}

impl Reason {
    /// The OpenFeature reason code.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TargetingMatch(_) => "TARGETING_MATCH",
            Reason::Static => "STATIC",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
        }
    }
}

/// A flag's value for a context, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub on: bool,
    pub reason: Reason,
}

impl Decision {
    /// In words, for the explainer.
    pub fn detail(&self) -> &'static str {
        match self.reason {
            Reason::TargetingMatch(TargetKind::User) => "The user is a target of the rule.",
            Reason::TargetingMatch(TargetKind::Organization) => {
                "The organization is a target of the rule."
            }
            Reason::Static => "The rule gives the flag to everybody.",
            Reason::Disabled => "The flag is off in this environment, or archived.",
            Reason::Default if self.on => "On by default.",
            Reason::Default => "The rule matches nobody in this context.",
        }
    }
}

/// The one decision: is `flag` on for `context`, and why.
pub fn decide(flag: &FlagRule, context: &Context) -> Decision {
    decide_rule(flag.archived, &flag.rule, context)
}

/// [`decide`] for a rule of a flag that is `archived` or not.
fn decide_rule(archived: bool, rule: &Rule, context: &Context) -> Decision {
    let (on, reason) = if archived || !rule.enabled {
        (false, Reason::Disabled)
    } else {
        match rule.mode {
            Mode::All => (true, Reason::Static),
            Mode::None => (false, Reason::Default),
            Mode::Some => {
                if context
                    .user
                    .as_ref()
                    .is_some_and(|u| rule.users.contains(u))
                {
                    (true, Reason::TargetingMatch(TargetKind::User))
                } else if context
                    .organization
                    .as_ref()
                    .is_some_and(|o| rule.organizations.contains(o))
                {
                    (true, Reason::TargetingMatch(TargetKind::Organization))
                } else {
                    (false, Reason::Default)
                }
            }
        }
    };
    Decision { on, reason }
}

/// The subjects a rule could turn the flag on for by name: those whose
/// decision depends on who they are. The index files the flag under them.
pub fn named_subjects(rule: &Rule) -> (Vec<&UserId>, Vec<&OrgId>) {
    if rule.mode == Mode::Some {
        (
            rule.users.iter().collect(),
            rule.organizations.iter().collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    }
}

/// What a live flag whose rule has `mode` gives, while switched on, a
/// context that no target names: WorkOS's `default_value`.
pub fn value_for_anyone(mode: Mode) -> bool {
    let rule = Rule {
        enabled: true,
        mode,
        ..Rule::default()
    };
    decide_rule(false, &rule, &Context::default()).on
}

/// Whether a flag may be on for a context that names nobody it targets:
/// the index keeps these flags as candidates for every context.
pub fn on_for_anyone(flag: &FlagRule) -> bool {
    decide(flag, &Context::default()).on
}

/// The flag's decision when it is the same for every context: when the
/// rule does not read the context at all (only an enabled Some rule of a
/// live flag does). The model answers these flags without asking
/// [`decide`] again for each request; `None` means decide per context.
pub fn context_free(flag: &FlagRule) -> Option<Decision> {
    let reads_context = !flag.archived && flag.rule.enabled && flag.rule.mode == Mode::Some;
    (!reads_context).then(|| decide(flag, &Context::default()))
}

#[cfg(test)]
mod tests;
