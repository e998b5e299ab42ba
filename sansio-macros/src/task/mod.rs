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
            errors.at(misplaced_span(&other), misplaced_message(&other));
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

/// What the attribute says when placed on anything but a struct or an
/// inherent impl.
fn misplaced_message(item: &Item) -> String {
    let found = match item {
        Item::Impl(_) => {
            return "#[sansio::task] goes on the task's inherent `impl` block (`impl Echo { .. }`), \
                    not on a trait impl"
                .to_owned();
        }
        Item::Enum(_) => "an enum",
        Item::Union(_) => "a union",
        Item::Fn(_) => "a function",
        Item::Trait(_) => "a trait",
        Item::Mod(_) => "a module",
        Item::Type(_) => "a type alias",
        Item::Const(_) => "a constant",
        Item::Static(_) => "a static",
        Item::Use(_) => "a `use` declaration",
        _ => "something else",
    };
    format!("#[sansio::task] goes on a struct and on its inherent `impl` block; found {found}")
}

/// The tokens a misplaced `#[sansio::task]` error points at: the item's
/// keyword and name, or the trait of a trait impl.
fn misplaced_span(item: &Item) -> TokenStream {
    match item {
        Item::Impl(item) => match &item.trait_ {
            Some((bang, path, for_token)) => quote!(#bang #path #for_token),
            None => item.impl_token.to_token_stream(),
        },
        Item::Enum(item) => {
            let (keyword, name) = (&item.enum_token, &item.ident);
            quote!(#keyword #name)
        }
        Item::Union(item) => {
            let (keyword, name) = (&item.union_token, &item.ident);
            quote!(#keyword #name)
        }
        Item::Fn(item) => {
            let (keyword, name) = (&item.sig.fn_token, &item.sig.ident);
            quote!(#keyword #name)
        }
        Item::Trait(item) => {
            let (keyword, name) = (&item.trait_token, &item.ident);
            quote!(#keyword #name)
        }
        Item::Mod(item) => {
            let (keyword, name) = (&item.mod_token, &item.ident);
            quote!(#keyword #name)
        }
        Item::Type(item) => {
            let (keyword, name) = (&item.type_token, &item.ident);
            quote!(#keyword #name)
        }
        other => other.to_token_stream(),
    }
}
