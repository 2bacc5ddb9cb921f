//! The strict-mode flag: whether the parse running on this thread rejects unknown enum values.
//! The lenient types read it (enums, durations), so it is always compiled; the strict parse
//! itself is [`super::strict`] (feature `strict`).

use std::cell::Cell;

thread_local! {
    static STRICT: Cell<bool> = const { Cell::new(false) };
}

/// Prefix of an enum error raised in strict mode, recognised when the error is rewritten.
pub(crate) const INVALID_ENUM_MARKER: &str = "\u{1}invalid-enum(";

/// Whether the parse running on this thread is strict.
pub(crate) fn is_strict() -> bool {
    STRICT.with(Cell::get)
}

/// Keeps echoed client text short: a close reason has at most 123 bytes.
pub fn truncate_value(v: &str) -> &str {
    let mut end = v.len().min(40);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    &v[..end]
}

/// Restores the previous mode when dropped.
#[cfg(feature = "strict")]
pub(crate) struct StrictGuard(bool);

#[cfg(feature = "strict")]
impl Drop for StrictGuard {
    fn drop(&mut self) {
        STRICT.with(|s| s.set(self.0));
    }
}

#[cfg(feature = "strict")]
impl StrictGuard {
    /// Turns strict mode on for this thread until the guard is dropped.
    pub(crate) fn enter() -> Self {
        StrictGuard(STRICT.with(|s| s.replace(true)))
    }
}
