//! `#[sansio::worker]`: on an enum with one tuple variant per task type, it
//! writes the worker-level id, input and output enums, the task groups and
//! the `Worker` and `Member` impls that let `Runtime::<Enum>` run them.
//!
//! Like the task macro: parse into a model (`parse.rs`), gather every mistake
//! at the user's tokens, expand (`expand.rs`); with mistakes, the enum is
//! still emitted with a stand-in expansion of its good variants.

mod expand;
mod parse;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::Item;

use crate::errors::Errors;

/// The expansion of `#[sansio::worker(args)]` on `input`.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let errors = Errors::new();
    let expansion = match syn::parse2::<Item>(input.clone()) {
        Ok(Item::Enum(item)) => {
            let worker = parse::WorkerEnum::from_syn(args, item, &errors);
            expand::worker(&worker)
        }
        Ok(other) => {
            errors.at(
                misplaced_span(&other),
                "#[sansio::worker] goes on an enum with one variant per task type, \
                 as in `enum Media { Echo(Echo), Room(Room) }`",
            );
            other.into_token_stream()
        }
        Err(error) => {
            errors.push(error);
            input
        }
    };
    match errors.finish() {
        Some(error) => {
            let mut tokens = expansion;
            tokens.extend(error.to_compile_error());
            tokens
        }
        None => expansion,
    }
}

/// The keyword and name of a misplaced item, for the error's span.
fn misplaced_span(item: &Item) -> TokenStream {
    match item {
        Item::Struct(item) => {
            let (keyword, name) = (&item.struct_token, &item.ident);
            quote!(#keyword #name)
        }
        Item::Impl(item) => item.impl_token.to_token_stream(),
        Item::Fn(item) => {
            let (keyword, name) = (&item.sig.fn_token, &item.sig.ident);
            quote!(#keyword #name)
        }
        other => other.to_token_stream(),
    }
}
