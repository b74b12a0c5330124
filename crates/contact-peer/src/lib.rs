//! Networking of contact (implemented in issue 4).

pub mod store;
