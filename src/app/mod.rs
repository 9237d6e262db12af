//! The operations layer: one function per use case, called alike by the admin pages, the JSON
//! API, bridge deliveries and jobs. Each takes a connection or transaction, the acting
//! principal and a validated command; checks permission, applies the rules, calls `store`,
//! writes the audit row, and returns the result. Entrances only parse input and render output.

pub mod jobs;
pub mod posters;
