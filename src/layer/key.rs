//! Scope keys: which counter a call is charged to.
//!
//! The `scope` part of a [`ScopeKey`] is `global`, `tenant:` followed by the tenant id, or
//! `workflow:` followed by the tenant id, `:` and the workflow run id. Each id is
//! percent-encoded: `%`, `:` and every ASCII control character (NUL included) become `%XX`, and
//! every other character is kept. So the encoding is injective: no choice of ids, whatever
//! separators, quotes or length they contain, yields the key of another tenant or run, and the
//! key never contains NUL, which PostgreSQL text cannot store.

use std::fmt::Write;

use crate::policy::{Policy, Scope};
use crate::store::ScopeKey;

/// Returns the key of a call under `policy` by `tenant`, from `workflow_run` when the policy
/// counts per workflow run.
///
/// Returns `None` when the policy counts per workflow run and there is no run.
pub(crate) fn scope_key(
    policy: &Policy,
    tenant: &str,
    workflow_run: Option<&str>,
) -> Option<ScopeKey> {
    let scope = match policy.scope {
        Scope::Global => "global".to_owned(),
        Scope::Tenant => {
            let mut scope = String::with_capacity("tenant:".len() + tenant.len());
            scope.push_str("tenant:");
            push_encoded(&mut scope, tenant);
            scope
        }
        Scope::Workflow => {
            let run = workflow_run?;
            let mut scope = String::with_capacity("workflow:".len() + tenant.len() + 1 + run.len());
            scope.push_str("workflow:");
            push_encoded(&mut scope, tenant);
            scope.push(':');
            push_encoded(&mut scope, run);
            scope
        }
    };

    Some(ScopeKey {
        tenant: policy.tenant.clone(),
        tool: policy.tool.clone(),
        scope,
    })
}

fn push_encoded(out: &mut String, id: &str) {
    for c in id.chars() {
        if c == '%' || c == ':' || c.is_ascii_control() {
            // `fmt::Write` for `String` never returns an error.
            let _ = write!(out, "%{:02X}", c as u32);
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::report::Capacity;

    fn policy(scope: Scope) -> Policy {
        let mut policy = Policy::new("default", "tools.email.send", Capacity::UNLIMITED);
        policy.scope = scope;
        policy
    }

    #[test]
    fn tricky_ids_never_collide() {
        let ids = [
            "",
            "a",
            "a:b",
            "a%3Ab",
            "a%b",
            "a\0b",
            "a\u{0}",
            ":",
            "::",
            "%",
            "%25",
            "global",
            "tenant:a",
            "\"quoted\"",
            "'x'",
            "x\ny",
            "日本",
            "日本:東京",
        ];
        let long = "x".repeat(100_000);
        let mut seen = HashSet::new();
        let mut count = 0;

        for tenant in ids.iter().copied().chain([long.as_str()]) {
            for run in ids.iter().copied().chain([long.as_str()]) {
                let key = scope_key(&policy(Scope::Workflow), tenant, Some(run)).unwrap();
                assert!(!key.scope.contains('\0'), "NUL in {:?}", key.scope);
                assert!(
                    seen.insert(key.scope),
                    "collision for tenant {tenant:?}, run {run:?}"
                );
                count += 1;
            }
            let key = scope_key(&policy(Scope::Tenant), tenant, None).unwrap();
            assert!(seen.insert(key.scope), "collision for tenant {tenant:?}");
            count += 1;
        }

        assert!(
            seen.insert("global".to_owned()),
            "a tenant key equals the global key"
        );
        assert_eq!(seen.len(), count + 1);
    }

    #[test]
    fn keys_read_as_their_ids() {
        let tenant = scope_key(&policy(Scope::Tenant), "acme", Some("run-1")).unwrap();
        let workflow = scope_key(&policy(Scope::Workflow), "ac:me", Some("run%1")).unwrap();
        let global = scope_key(&policy(Scope::Global), "acme", None).unwrap();

        assert_eq!(tenant.scope, "tenant:acme");
        assert_eq!(workflow.scope, "workflow:ac%3Ame:run%251");
        assert_eq!(global.scope, "global");
        assert_eq!(global.tenant, "default");
        assert_eq!(global.tool, "tools.email.send");
    }

    #[test]
    fn workflow_scope_needs_a_run() {
        assert_eq!(scope_key(&policy(Scope::Workflow), "acme", None), None);
    }
}
