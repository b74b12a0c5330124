//! The registry state machine of contact (implemented in issue 3).
