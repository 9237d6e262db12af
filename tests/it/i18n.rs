//! Tests: i18n.
