//! `#[sansio::task]`: on a struct it declares the task's output type; on the
//! struct's inherent `impl` block it writes the input enum, the `Task` impl
//! and the `Handles` bounds from the handler attributes.
//!
//! The pipeline is parse (a typed model of the input, `parse.rs`), validate
//! (the rules, `validate.rs`), expand (`expand.rs`). Every mistake is gathered
//! before anything is reported; with mistakes, the user's item is still
//! emitted, with a stand-in expansion so that the rest of their crate
//! type-checks and they see one error per mistake, not a cascade.

mod expand;
mod parse;
mod validate;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::Item;

use crate::errors::Errors;

/// The expansion of `#[sansio::task(args)]` on `input`.
pub(crate) fn expand(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse2::<Item>(input.clone()) {
        Ok(item) => item,
        // Not an item rustc would accept either: leave the user's tokens for
        // rustc to report, plus our error.
        Err(error) => return with_error(input, &error),
    };
    let errors = Errors::new();
    let expansion = match item {
        Item::Struct(item) => {
            let decl = parse::StructDecl::from_syn(args, item, &errors);
            validate::struct_decl(&decl, &errors);
            expand::struct_decl(&decl)
        }
        Item::Impl(item) if item.trait_.is_none() => {
            let task = parse::TaskImpl::from_syn(args, item, &errors);
            validate::task_impl(&task, &errors);
            expand::task_impl(&task, !errors.any())
        }
        other => {
            let (tokens, message) = misplaced(&other);
            errors.at(tokens, message);
            parse::strip_handler_attrs(other).into_token_stream()
        }
    };
    match errors.finish() {
        Some(error) => with_error(expansion, &error),
        None => expansion,
    }
}

/// `tokens` followed by `error` as `compile_error!`s.
fn with_error(mut tokens: TokenStream, error: &syn::Error) -> TokenStream {
    tokens.extend(error.to_compile_error());
    tokens
}

/// The error for `#[sansio::task]` placed on anything but a struct or an
/// inherent impl: the tokens it points at (the item's keyword and name, or
/// the trait of a trait impl) and the message.
fn misplaced(item: &Item) -> (TokenStream, String) {
    let (tokens, found) = match item {
        Item::Impl(item) => {
            let tokens = match &item.trait_ {
                Some((bang, path, for_token)) => quote!(#bang #path #for_token),
                None => item.impl_token.to_token_stream(),
            };
            let message = "#[sansio::task] goes on the task's inherent `impl` block \
                           (`impl Echo { .. }`), not on a trait impl";
            return (tokens, message.to_owned());
        }
        Item::Enum(item) => (quote_pair(&item.enum_token, &item.ident), "an enum"),
        Item::Union(item) => (quote_pair(&item.union_token, &item.ident), "a union"),
        Item::Fn(item) => (
            quote_pair(&item.sig.fn_token, &item.sig.ident),
            "a function",
        ),
        Item::Trait(item) => (quote_pair(&item.trait_token, &item.ident), "a trait"),
        Item::Mod(item) => (quote_pair(&item.mod_token, &item.ident), "a module"),
        Item::Type(item) => (quote_pair(&item.type_token, &item.ident), "a type alias"),
        Item::Const(item) => (quote_pair(&item.const_token, &item.ident), "a constant"),
        Item::Static(item) => (quote_pair(&item.static_token, &item.ident), "a static"),
        other => (other.to_token_stream(), "something else"),
    };
    let message =
        format!("#[sansio::task] goes on a struct and on its inherent `impl` block; found {found}");
    (tokens, message)
}

/// A keyword and a name, as one span to point at.
fn quote_pair(keyword: &impl ToTokens, name: &impl ToTokens) -> TokenStream {
    quote!(#keyword #name)
}
