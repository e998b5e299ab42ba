//! Formatting a value with `Debug` when its type has it, and as `(..)` when
//! not, decided by method resolution in generated code (where the type is
//! concrete): `(&DebugProbe(value)).debug_or_elide(name, f)` finds
//! [`DebugIfDebug`] first when the type is `Debug`, [`DebugOtherwise`]
//! otherwise.

use std::fmt;

/// A value to format.
#[doc(hidden)]
#[derive(Debug)]
pub struct DebugProbe<'a, T>(pub &'a T);

/// Formats `name(value)` with the value's `Debug`.
#[doc(hidden)]
pub trait DebugIfDebug {
    /// Formats the value as `name(value)`.
    fn debug_or_elide(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<T: fmt::Debug> DebugIfDebug for DebugProbe<'_, T> {
    fn debug_or_elide(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple(name).field(self.0).finish()
    }
}

/// Formats `name(..)` for a value without `Debug`.
#[doc(hidden)]
pub trait DebugOtherwise {
    /// Formats the value as `name(..)`.
    fn debug_or_elide(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result;
}

impl<T> DebugOtherwise for &DebugProbe<'_, T> {
    fn debug_or_elide(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{name}(..)")
    }
}
