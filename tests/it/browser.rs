//! Tests: browser.
