//! Gathers every mistake found in one macro input, so that the user sees them
//! all in one compile instead of one per edit.

use std::cell::RefCell;
use std::fmt::Display;

use quote::ToTokens;

/// The errors found so far. Must be consumed with [`Errors::finish`]: dropping
/// it unchecked is a bug in the macro, caught by a panic in debug builds.
pub(crate) struct Errors {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Errors {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// Records `error`.
    pub(crate) fn push(&self, error: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Errors used after finish")
            .push(error);
    }

    /// Records `message` at the span of `tokens`.
    pub(crate) fn at(&self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Whether any error has been recorded.
    pub(crate) fn any(&self) -> bool {
        self.errors
            .borrow()
            .as_ref()
            .is_some_and(|errors| !errors.is_empty())
    }

    /// All recorded errors combined into one, or `None` when there were none.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        let errors = self.errors.borrow_mut().take().expect("finished twice");
        errors.into_iter().reduce(|mut all, next| {
            all.combine(next);
            all
        })
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("sansio-macros bug: errors were gathered but never reported");
        }
    }
}
