//! The second step of a destructive action, without JavaScript: a POST without `confirm=1`
//! changes nothing and answers a page that asks; its form posts the same URL again with
//! `confirm=1` and the CSRF token. Permission checks run before the question is asked, so the
//! page never reveals what the asker could not change.

use askama::Template;
use axum::http::StatusCode;
use axum::response::Response;

use super::ctx::{Ctx, Layout};
use super::render;
use crate::error::AppResult;

/// True when the urlencoded `body` carries `confirm=1`.
pub fn given(body: &[u8]) -> bool {
    form_urlencoded::parse(body).any(|(k, v)| k == "confirm" && v == "1")
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    l: Layout,
    question: String,
    action: String,
    button: &'static str,
    cancel: String,
}

/// What to ask: the question in words, where the confirmed form posts, the label of the
/// button that does it, and where "cancel" leads.
pub struct Ask<'a> {
    pub nav: &'static str,
    pub question: String,
    pub action: &'a str,
    pub button_key: &'a str,
    pub cancel: &'a str,
}

/// The confirmation page (200).
pub async fn page(ctx: &Ctx, ask: Ask<'_>) -> AppResult<Response> {
    let page = ConfirmPage {
        l: ctx.layout("confirm.title", ask.nav).await?,
        question: ask.question,
        action: ask.action.to_string(),
        button: ctx.tr.t(ask.button_key),
        cancel: ask.cancel.to_string(),
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_confirm_1_confirms() {
        assert!(super::given(b"_csrf=x&confirm=1"));
        assert!(!super::given(b"_csrf=x"));
        assert!(!super::given(b"_csrf=x&confirm=yes"));
        assert!(!super::given(b""));
    }
}
