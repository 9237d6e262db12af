//! The operations layer: one function per use case, called alike by the admin pages and the
//! JSON API (and later by bridge deliveries and jobs). Each takes a connection or transaction,
//! the acting principal and a validated command (a domain type); checks permission and scope,
//! applies the rules, calls `store`, writes the audit row, and returns the result with what
//! must happen after the commit ([`AfterCommit`]). Entrances only parse input, open the
//! transaction, commit it and render output:
//!
//! ```text
//! handler → parse into a domain type → tx → app::x::y(&mut tx, principal, command)
//!         → store (SQL) + audit row → commit → AfterCommit::run (scan cache) → render
//! ```
//!
//! Work for later is never an after-commit effect: a job is enqueued inside the transaction
//! (`store::jobs::enqueue`), so that it exists exactly when the change does.

pub mod automation;
pub mod avatars;
pub mod broadcasts;
pub mod checkin_poster;
pub mod groups;
pub mod invite_links;
pub mod invites;
pub mod jobs;
pub mod landing;
pub mod live_codes;
pub mod member_page;
pub mod members;
pub mod moderation;
pub mod operators;
pub mod outbound;
pub mod points;
pub mod posters;
pub mod questionnaire;
pub mod rule_sets;
pub mod settings;
pub mod tokens;

use sqlx::{PgConnection, Postgres, Transaction};

use crate::auth::Principal;
use crate::error::{AppError, AppResult, FieldErrors};
use crate::store::audit::{self, Actor};
use crate::AppState;

/// What a change asks of this process once its transaction has committed (never before: a
/// rolled-back change must leave no trace).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[must_use = "run it after the commit"]
pub struct AfterCommit {
    /// Live-code slugs whose cached scan snapshot is stale (old and new slug after a rename).
    pub invalidate_slugs: Vec<String>,
    /// A rule set, its rules or an attachment changed: this process's rule-set cache forgets
    /// at once (other processes hear `NOTIFY shoal_rule_sets`).
    pub rule_sets_changed: bool,
}

impl AfterCommit {
    pub fn none() -> AfterCommit {
        AfterCommit::default()
    }

    /// The scan cache forgets these slugs.
    pub fn invalidate(slugs: impl IntoIterator<Item = String>) -> AfterCommit {
        let mut invalidate_slugs: Vec<String> = Vec::new();
        for s in slugs {
            if !invalidate_slugs.iter().any(|x| x.eq_ignore_ascii_case(&s)) {
                invalidate_slugs.push(s);
            }
        }
        AfterCommit { invalidate_slugs, rule_sets_changed: false }
    }

    /// The rule-set cache forgets everything.
    pub fn rule_sets() -> AfterCommit {
        AfterCommit { rule_sets_changed: true, ..AfterCommit::default() }
    }

    pub fn run(self, state: &AppState) {
        // The store bumps the chat-lookup generation as it writes, before the commit: a webhook
        // reading a chat's group in between would keep the old group under the new generation.
        // Bumped again now that the change is visible (any use case; a missed lookup is cheap).
        crate::store::groups::lookups_changed();
        for slug in &self.invalidate_slugs {
            state.scan.invalidate(slug);
        }
        if self.rule_sets_changed {
            state.automation.rule_sets.invalidate_all();
        }
    }
}

/// A use case's result and what to do after the commit.
#[derive(Debug)]
#[must_use = "commit the transaction with `commit`, then the effects run"]
pub struct Done<T> {
    pub value: T,
    pub after: AfterCommit,
}

impl<T> Done<T> {
    pub fn new(value: T, after: AfterCommit) -> Done<T> {
        Done { value, after }
    }

    /// A result with nothing to do after the commit.
    pub fn plain(value: T) -> Done<T> {
        Done { value, after: AfterCommit::none() }
    }

    /// Commits `tx`, then runs the effects; the result.
    pub async fn commit(self, tx: Transaction<'_, Postgres>, state: &AppState) -> AppResult<T> {
        tx.commit().await?;
        self.after.run(state);
        Ok(self.value)
    }
}

/// One audit row for the principal's change of `kind` `id`.
pub(crate) async fn record(
    conn: &mut PgConnection,
    who: &Principal,
    action: &str,
    kind: &str,
    id: Option<i64>,
    details: serde_json::Value,
) -> AppResult<()> {
    audit::record(conn, Actor::Principal(who), action, kind, id.map(|i| i.to_string()), details).await?;
    Ok(())
}

/// A validation error on one field.
pub(crate) fn invalid(field: &str, key: &'static str) -> AppError {
    let mut fe = FieldErrors::new();
    fe.add(field, key);
    AppError::Validation(fe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value that carries a password, hash, token or key shows `[redacted]` instead.
    #[test]
    fn debug_never_prints_a_secret() {
        const SECRET: &str = "hunter2-s3cr3t-shoal_abcdef";
        let shown = [
            format!("{:?}", crate::store::secrets::SecretBytes(SECRET.as_bytes().to_vec())),
            format!(
                "{:?}",
                crate::store::operators::Credentials { id: 1, password_hash: SECRET.into(), session_epoch: 0 }
            ),
            format!(
                "{:?}",
                crate::store::operators::NewOperator {
                    username: "u",
                    password_hash: SECRET,
                    role: crate::auth::Role::Admin,
                    all_groups: true,
                    group_ids: &[],
                    language: None,
                }
            ),
            format!(
                "{:?}",
                crate::store::tokens::NewToken {
                    name: "t",
                    hash: SECRET.as_bytes(),
                    prefix: "shoal_ab",
                    role: crate::auth::Role::Viewer,
                    all_groups: false,
                    group_ids: &[],
                    created_by: None,
                }
            ),
            format!(
                "{:?}",
                operators::NewAccount {
                    username: "u".into(),
                    password: SECRET.into(),
                    role: crate::auth::Role::Operator,
                    all_groups: false,
                    groups: vec![],
                }
            ),
            format!(
                "{:?}",
                operators::AccessChange {
                    role: crate::auth::Role::Operator,
                    all_groups: false,
                    groups: vec![],
                    disabled: false,
                    password: Some(SECRET.into()),
                }
            ),
            format!(
                "{:?}",
                tokens::Created {
                    token: crate::store::tokens::TokenRow {
                        id: 1,
                        name: "t".into(),
                        prefix: "shoal_ab".into(),
                        role: crate::auth::Role::Viewer,
                        all_groups: false,
                        created_at: chrono::Utc::now(),
                        last_used_at: None,
                        revoked_at: None,
                        group_ids: vec![],
                    },
                    secret: SECRET.into(),
                }
            ),
            {
                let mut c = crate::Config::defaults();
                c.database.url = format!("postgres://shoal:{SECRET}@db/shoal");
                format!("{c:?}")
            },
        ];
        let hex = hex::encode(SECRET);
        for s in &shown {
            assert!(!s.contains(SECRET) && !s.contains(&hex), "a secret in {s}");
            assert!(!s.contains("104, 117, 110"), "secret bytes in {s}");
        }
        assert!(shown[1].contains("[redacted]") && shown[6].contains("[redacted]"));
    }

    #[test]
    fn after_commit_names_each_slug_once() {
        let a = AfterCommit::invalidate(["Spring".to_string(), "spring".to_string(), "autumn".to_string()]);
        assert_eq!(a.invalidate_slugs, vec!["Spring".to_string(), "autumn".to_string()]);
        assert!(AfterCommit::none().invalidate_slugs.is_empty());
    }
}
