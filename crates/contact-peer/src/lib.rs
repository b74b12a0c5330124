//! Networking of contact (implemented in issue 4).
