//! Networking of contact (implemented in issue 4).

pub mod relay;
pub mod store;
