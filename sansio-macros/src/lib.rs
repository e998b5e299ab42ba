//! Procedural macros of [sansio](https://docs.rs/sansio): `#[sansio::task]`
//! and the handler attributes it reads.
//!
//! Use them through the `sansio` crate, which re-exports them and provides
//! the `__private` module the generated code relies on; this crate's version
//! is pinned exactly by `sansio`.

#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]

mod args;
mod duration;
mod errors;
mod span;
mod symbol;
mod task;
mod worker;

use proc_macro::TokenStream;

// The attributes are documented where users read them: on their re-exports in
// `sansio`, with links and doc-tests. rustdoc shows an item's own docs after
// its re-export's, so the entry points below carry docs only in this crate's
// own documentation build (`cfg(doc)`); the compiled macros that `sansio`'s
// documentation reads have none, and its pages show one description each.

#[cfg_attr(
    doc,
    doc = "Declares a task: `#[sansio::task]` on its struct and on its inherent `impl` block. Documented on its re-export, `sansio::task`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn task(args: TokenStream, input: TokenStream) -> TokenStream {
    task::expand(args.into(), input.into()).into()
}

#[cfg_attr(
    doc,
    doc = "Declares a worker kind: `#[sansio::worker]` on an enum of task types. Documented on its re-export, `sansio::worker`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    worker::expand(args.into(), input.into()).into()
}

#[cfg_attr(
    doc,
    doc = "Marks the handler of one input type. Documented on its re-export, `sansio::on_input`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_input(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_INPUT, input)
}

#[cfg_attr(
    doc,
    doc = "Marks the handler of one request type. Documented on its re-export, `sansio::on_request`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_request(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_REQUEST, input)
}

#[cfg_attr(
    doc,
    doc = "Marks the handler called when the task starts. Documented on its re-export, `sansio::on_start`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_start(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_START, input)
}

#[cfg_attr(
    doc,
    doc = "Marks the periodic handler. Documented on its re-export, `sansio::on_tick`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_tick(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_TICK, input)
}

#[cfg_attr(
    doc,
    doc = "Marks the handler of the task's timer. Documented on its re-export, `sansio::on_timer`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_timer(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_TIMER, input)
}

#[cfg_attr(
    doc,
    doc = "Marks the handler called at graceful shutdown. Documented on its re-export, `sansio::on_shutdown`."
)]
#[cfg_attr(not(doc), allow(missing_docs))]
#[proc_macro_attribute]
pub fn on_shutdown(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_SHUTDOWN, input)
}

/// A handler attribute that rustc expanded on its own: the enclosing impl
/// block has no `#[sansio::task]` (which would have consumed it). A method
/// is left out: its `&mut Ctx<Self>` names a type that is not a task yet,
/// which would add an error of its own at every use ("`Echo` is not a sansio
/// task"), so only this error shows. Anything else is kept.
fn outside_task_impl(attribute: &str, input: TokenStream) -> TokenStream {
    let message = format!(
        "`#[{attribute}]` is only valid inside a `#[sansio::task]` impl block: \
         add `#[sansio::task]` above the `impl` block holding this method"
    );
    let input = proc_macro2::TokenStream::from(input);
    let is_method = syn::parse2::<syn::ImplItemFn>(input.clone()).is_ok();
    let mut output = if is_method {
        proc_macro2::TokenStream::new()
    } else {
        input
    };
    output.extend(syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error());
    output.into()
}
