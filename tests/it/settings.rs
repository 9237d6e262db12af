//! Tests: settings.
