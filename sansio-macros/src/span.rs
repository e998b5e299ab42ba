//! Spans for generated code.

use proc_macro2::{Group, Span, TokenStream, TokenTree};

/// `tokens` with every token at `span`, so that an error about them points
/// at the user's tokens the generated code stands for, and errors about the
/// same thing at the same place are identical (rustc prints those once).
pub(crate) fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut tree| {
            if let TokenTree::Group(group) = &tree {
                let mut respanned = Group::new(group.delimiter(), respan(group.stream(), span));
                respanned.set_span(span);
                tree = TokenTree::Group(respanned);
            } else {
                tree.set_span(span);
            }
            tree
        })
        .collect()
}
