//! One integration-test binary (one link step). Every test gets a fresh database cloned from a
//! migrated template, in a throwaway cluster the harness starts itself (or on DATABASE_URL).

mod harness;

mod alerts;
mod api;
mod api_fuzz;
mod api_hardening;
mod auth;
mod automation;
mod automation2;
mod bridge_pages;
mod bridge_parsing;
mod bridges;
mod broadcasts;
mod browser;
mod chatter;
mod cli;
mod fakebots;
mod groups;
mod i18n;
mod invite_links;
mod invite_loop;
mod invites;
mod jobs;
mod live_code_pages;
mod live_codes;
mod member_page;
mod members;
mod moderation;
mod ops;
mod outbound;
mod parity;
mod points;
mod posters;
mod public_limits;
mod scale;
mod scopes;
mod settings;
mod ux;
