//! Parses attribute arguments of the form `key = value, key = value`.

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, Token};

use crate::errors::Errors;
use crate::symbol::{CHANNEL, CRATE, EVENT, OUTPUT};

/// Parses `tokens` as comma-separated `key = value` pairs.
///
/// `attribute` names the attribute in messages (for example
/// "`#[on_tick]`"); `valid` lists the keys it accepts, in the order the
/// message lists them. For each valid key, `value` parses the value from the
/// stream. Unknown keys, repeated keys and malformed syntax are recorded in
/// `errors`; `explain` may supply a more helpful message for a known mistake
/// (a key that belongs elsewhere).
pub(crate) fn parse(
    tokens: TokenStream,
    attribute: &str,
    valid: &[&str],
    errors: &Errors,
    explain: impl Fn(&Ident) -> Option<String>,
    mut value: impl FnMut(&Ident, ParseStream<'_>) -> syn::Result<()>,
) {
    let parser = |input: ParseStream<'_>| -> syn::Result<()> {
        let mut seen: Vec<String> = Vec::new();
        while !input.is_empty() {
            // `parse_any` accepts keywords, so `crate = ..` parses as a key.
            let key = input.call(Ident::parse_any)?;
            let name = key.to_string();
            input.parse::<Token![=]>()?;
            if valid.contains(&name.as_str()) {
                if seen.contains(&name) {
                    errors.at(&key, format_args!("`{name}` set multiple times"));
                }
                seen.push(name);
                value(&key, input)?;
            } else {
                let message = explain(&key).unwrap_or_else(|| unknown(&name, attribute, valid));
                errors.at(&key, message);
                skip_value(input)?;
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(())
    };
    if let Err(error) = parser.parse2(tokens) {
        errors.push(error);
    }
}

/// The arguments of `#[sansio::task]` on a struct and of
/// `#[sansio::worker]`: `output = Type`, `crate = path`, and the bus types
/// `channel = Type, event = Type` (both or neither).
#[derive(Default)]
pub(crate) struct DeclArgs {
    pub(crate) output: Option<syn::Type>,
    pub(crate) krate: Option<syn::Path>,
    /// `(channel, event)`, when both are given.
    pub(crate) bus: Option<(syn::Type, syn::Type)>,
}

/// Parses [`DeclArgs`].
pub(crate) fn decl_args(tokens: TokenStream, attribute: &str, errors: &Errors) -> DeclArgs {
    let mut args = DeclArgs::default();
    // Each bus type with the key that set it, to point errors at.
    let mut channel: Option<(Ident, syn::Type)> = None;
    let mut event: Option<(Ident, syn::Type)> = None;
    parse(
        tokens,
        attribute,
        &[OUTPUT, CRATE, CHANNEL, EVENT],
        errors,
        |_| None,
        |key, input| {
            if key == OUTPUT {
                args.output = Some(input.parse()?);
            } else if key == CRATE {
                args.krate = Some(input.parse()?);
            } else if key == CHANNEL {
                channel = Some((key.clone(), input.parse()?));
            } else {
                event = Some((key.clone(), input.parse()?));
            }
            Ok(())
        },
    );
    match (channel, event) {
        (Some((_, channel)), Some((_, event))) => args.bus = Some((channel, event)),
        (Some((key, _)), None) => errors.at(
            &key,
            "`channel` needs `event` too: a bus is declared with both",
        ),
        (None, Some((key, _))) => errors.at(
            &key,
            "`event` needs `channel` too: a bus is declared with both",
        ),
        (None, None) => {}
    }
    args
}

/// The message for an unknown key: it lists the valid ones.
fn unknown(name: &str, attribute: &str, valid: &[&str]) -> String {
    let expected = match valid {
        [] => return format!("unknown argument `{name}`: {attribute} takes no arguments"),
        [one] => format!("`{one}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|key| format!("`{key}`")).collect();
            format!("{} or `{last}`", init.join(", "))
        }
    };
    format!("unknown argument `{name}` for {attribute}; expected {expected}")
}

/// Consumes the value of an unknown key: an expression or a type, or failing
/// both, every token up to the next top-level comma.
fn skip_value(input: ParseStream<'_>) -> syn::Result<()> {
    let fork = input.fork();
    if fork.parse::<syn::Expr>().is_ok() && (fork.is_empty() || fork.peek(Token![,])) {
        return input.parse::<syn::Expr>().map(drop);
    }
    let fork = input.fork();
    if fork.parse::<syn::Type>().is_ok() && (fork.is_empty() || fork.peek(Token![,])) {
        return input.parse::<syn::Type>().map(drop);
    }
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<proc_macro2::TokenTree>()?;
    }
    Ok(())
}
