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

/// Declares a sans-I/O task. See the `sansio` crate's documentation.
///
/// On a struct: `#[sansio::task(output = Type, crate = path)]`, both
/// optional. On the struct's inherent `impl` block: `#[sansio::task]` (or
/// `#[sansio::task(crate = path)]`), with the handler attributes
/// `#[on_start]`, `#[on_input]`, `#[on_tick(every = "..")]`, `#[on_timer]` and
/// `#[on_shutdown]` on its methods.
#[proc_macro_attribute]
pub fn task(args: TokenStream, input: TokenStream) -> TokenStream {
    task::expand(args.into(), input.into()).into()
}

/// Declares a worker kind: an enum with one tuple variant per task type.
/// See the `sansio` crate's documentation.
///
/// `#[sansio::worker(output = Type, crate = path)]`, both optional.
#[proc_macro_attribute]
pub fn worker(args: TokenStream, input: TokenStream) -> TokenStream {
    worker::expand(args.into(), input.into()).into()
}

/// Marks the handler of one input type. Only meaningful inside a
/// `#[sansio::task]` impl block, which consumes it; anywhere else it is an
/// error.
#[proc_macro_attribute]
pub fn on_input(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_INPUT, input)
}

/// Marks the handler of one request type (answered to whoever asked).
/// Only meaningful inside a `#[sansio::task]` impl block.
#[proc_macro_attribute]
pub fn on_request(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_REQUEST, input)
}

/// Marks the handler called when the task starts. Only meaningful inside a
/// `#[sansio::task]` impl block.
#[proc_macro_attribute]
pub fn on_start(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_START, input)
}

/// Marks the periodic handler. Only meaningful inside a `#[sansio::task]`
/// impl block.
#[proc_macro_attribute]
pub fn on_tick(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_TICK, input)
}

/// Marks the handler of the task's timer. Only meaningful inside a
/// `#[sansio::task]` impl block.
#[proc_macro_attribute]
pub fn on_timer(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_TIMER, input)
}

/// Marks the handler called at graceful shutdown. Only meaningful inside a
/// `#[sansio::task]` impl block.
#[proc_macro_attribute]
pub fn on_shutdown(_args: TokenStream, input: TokenStream) -> TokenStream {
    outside_task_impl(symbol::ON_SHUTDOWN, input)
}

/// A handler attribute that rustc expanded on its own: the enclosing impl
/// block has no `#[sansio::task]` (which would have consumed it). The item is
/// kept, so only this error shows.
fn outside_task_impl(attribute: &str, input: TokenStream) -> TokenStream {
    let message = format!(
        "`#[{attribute}]` is only valid inside a `#[sansio::task]` impl block: \
         add `#[sansio::task]` above the `impl` block holding this method"
    );
    let mut output = proc_macro2::TokenStream::from(input);
    output.extend(syn::Error::new(proc_macro2::Span::call_site(), message).to_compile_error());
    output.into()
}
