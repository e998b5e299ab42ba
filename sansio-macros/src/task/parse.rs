//! The typed model of a `#[sansio::task]` input, built from syn. It keeps the
//! user's nodes, so every later error can point at the user's own tokens.

use std::time::Duration;

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{
    Attribute, FnArg, Ident, ImplItem, Item, ItemImpl, ItemStruct, LitInt, LitStr, Meta, Path,
    PathArguments, Signature, Type,
};

use crate::errors::Errors;
use crate::symbol::{
    CRATE, EVERY, EVERY_MS, ON_INPUT, ON_REQUEST, ON_SHUTDOWN, ON_START, ON_TICK, ON_TIMER, OUTPUT,
};
use crate::{args, duration};

/// `#[sansio::task(output = .., crate = .., channel = .., event = ..)] struct Name { .. }`.
pub(crate) struct StructDecl {
    pub(crate) item: ItemStruct,
    pub(crate) output: Option<Type>,
    pub(crate) krate: Option<Path>,
    /// The bus `(channel, event)` types, when declared.
    pub(crate) bus: Option<(Type, Type)>,
}

impl StructDecl {
    pub(crate) fn from_syn(args: TokenStream, item: ItemStruct, errors: &Errors) -> Self {
        let args = args::decl_args(args, "#[sansio::task] on a struct", errors);
        StructDecl {
            item,
            output: args.output,
            krate: args.krate,
            bus: args.bus,
        }
    }
}

/// `#[sansio::task(crate = ..)] impl Name { .. }`, with the handler
/// attributes taken off the methods and modelled as [`Handler`]s.
pub(crate) struct TaskImpl {
    /// The user's impl block, without the handler attributes.
    pub(crate) item: ItemImpl,
    /// The task's name: the last segment of the self type, when it is a path.
    pub(crate) name: Option<Ident>,
    pub(crate) krate: Option<Path>,
    pub(crate) handlers: Vec<Handler>,
}

impl TaskImpl {
    pub(crate) fn from_syn(args: TokenStream, mut item: ItemImpl, errors: &Errors) -> Self {
        let name = self_name(&item.self_ty);
        let mut krate = None;
        args::parse(
            args,
            "#[sansio::task] on an impl block",
            &[CRATE],
            errors,
            |key| {
                (key == OUTPUT).then(|| {
                    let task = name.as_ref().map_or("Task".to_owned(), Ident::to_string);
                    format!(
                        "`output` goes on the struct: `#[sansio::task(output = Type)] struct {task}`"
                    )
                })
            },
            |_, input: ParseStream<'_>| {
                krate = Some(input.parse()?);
                Ok(())
            },
        );
        let mut handlers = Vec::new();
        for impl_item in &mut item.items {
            let (attrs, not_a_method) = match impl_item {
                ImplItem::Fn(method) => {
                    let attrs = take_handler_attrs(&mut method.attrs);
                    let cfgs = presence_attrs(&method.attrs);
                    handlers.extend(
                        Handler::from_attrs(attrs, &method.sig, errors)
                            .map(|handler| Handler { cfgs, ..handler }),
                    );
                    continue;
                }
                ImplItem::Const(item) => (
                    take_handler_attrs(&mut item.attrs),
                    "an associated constant",
                ),
                ImplItem::Type(item) => (take_handler_attrs(&mut item.attrs), "an associated type"),
                ImplItem::Macro(item) => {
                    (take_handler_attrs(&mut item.attrs), "a macro invocation")
                }
                _ => continue,
            };
            for (kind, attr) in attrs {
                errors.at(
                    &attr,
                    format_args!(
                        "`#[{}]` goes on a method taking `&mut self`, not on {not_a_method}",
                        kind.attribute()
                    ),
                );
            }
        }
        TaskImpl {
            item,
            name,
            krate,
            handlers,
        }
    }
}

/// What a handler attribute makes of a method.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Start,
    Input,
    Request,
    Tick,
    Timer,
    Shutdown,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Start,
        Kind::Input,
        Kind::Request,
        Kind::Tick,
        Kind::Timer,
        Kind::Shutdown,
    ];

    /// The attribute's name, as written by the user.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Kind::Start => ON_START,
            Kind::Input => ON_INPUT,
            Kind::Request => ON_REQUEST,
            Kind::Tick => ON_TICK,
            Kind::Timer => ON_TIMER,
            Kind::Shutdown => ON_SHUTDOWN,
        }
    }

    /// The signature the handler must have, for messages.
    pub(crate) fn signature(self) -> &'static str {
        match self {
            Kind::Input => "(&mut self, ctx: &mut Ctx<Self>, input: T)",
            Kind::Request => {
                "(&mut self, ctx: &mut Ctx<Self>, request: R) -> R::Response, or (&mut self, ctx: &mut Ctx<Self>, request: R, responder: Responder<R>)"
            }
            Kind::Timer => {
                "(&mut self, ctx: &mut Ctx<Self>), or (&mut self, ctx: &mut Ctx<Self>, key: K) for keyed timers"
            }
            _ => "(&mut self, ctx: &mut Ctx<Self>)",
        }
    }

    /// The kind an attribute stands for: its last path segment names it, so
    /// `#[on_input]` and `#[sansio::on_input]` are the same.
    fn of(attr: &Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        Kind::ALL
            .into_iter()
            .find(|kind| last.ident == kind.attribute())
    }
}

/// One method carrying a handler attribute.
pub(crate) struct Handler {
    pub(crate) kind: Kind,
    /// The handler attribute, for errors about the handler as a whole.
    pub(crate) attr: Attribute,
    pub(crate) sig: Signature,
    /// The tick interval (for [`Kind::Tick`], when it parsed).
    pub(crate) every: Option<Duration>,
    /// The method's `#[cfg]`s (and the `cfg` parts of its `#[cfg_attr]`s):
    /// repeated on every generated item that names the method, so that a
    /// handler compiled out takes its wiring with it.
    pub(crate) cfgs: Vec<Attribute>,
}

impl Handler {
    /// The handler described by the handler attributes `attrs` of the method
    /// `sig`, or `None` when there are none. A method takes one handler
    /// attribute; further ones are reported.
    fn from_attrs(attrs: Vec<(Kind, Attribute)>, sig: &Signature, errors: &Errors) -> Option<Self> {
        let mut attrs = attrs.into_iter();
        let (kind, attr) = attrs.next()?;
        for (extra, extra_attr) in attrs {
            errors.at(
                &extra_attr,
                format_args!(
                    "`{}` already has `#[{}]`; a method takes one handler attribute, so `#[{}]` needs a method of its own",
                    sig.ident,
                    kind.attribute(),
                    extra.attribute()
                ),
            );
        }
        let every = if kind == Kind::Tick {
            tick_interval(&attr, errors)
        } else {
            if let Meta::List(_) | Meta::NameValue(_) = &attr.meta {
                errors.at(
                    &attr.meta,
                    format_args!("`#[{}]` takes no arguments", kind.attribute()),
                );
            }
            None
        };
        Some(Handler {
            kind,
            attr,
            sig: sig.clone(),
            every,
            cfgs: Vec::new(),
        })
    }

    /// The method's parameters after the receiver.
    pub(crate) fn params(&self) -> impl Iterator<Item = &syn::PatType> {
        self.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(param) => Some(param),
            FnArg::Receiver(_) => None,
        })
    }

    /// The input enum's variant for this handler: the method's name in
    /// `UpperCamelCase` (`udp_packet` gives `UdpPacket`).
    pub(crate) fn variant(&self) -> Ident {
        let name = self.sig.ident.unraw().to_string();
        let camel: String = name
            .split('_')
            .flat_map(|word| {
                let mut chars = word.chars();
                chars.next().map(|first| first.to_uppercase().chain(chars))
            })
            .flatten()
            .collect();
        let camel = if camel.is_empty() {
            "Input".to_owned()
        } else {
            camel
        };
        Ident::new(&camel, self.sig.ident.span())
    }

    /// The key type of a keyed `#[on_timer]` handler: its second parameter,
    /// when it is not a `&mut` (the context).
    pub(crate) fn timer_key(&self) -> Option<&Type> {
        if self.kind != Kind::Timer {
            return None;
        }
        let params: Vec<_> = self.params().collect();
        match params.as_slice() {
            [_, key] if !matches!(&*key.ty, Type::Reference(reference) if reference.mutability.is_some()) => {
                Some(&key.ty)
            }
            _ => None,
        }
    }

    /// The input type of an `#[on_input]` handler: its only parameter that is
    /// not a `&mut` (the context). Lenient on purpose, so that a handler whose parameters are
    /// in the wrong order still names its input in the stand-in expansion.
    pub(crate) fn input_ty(&self) -> Option<&Type> {
        if self.kind == Kind::Request {
            // The request: the first parameter that is not the context.
            return self
                .params()
                .find(|param| !matches!(&*param.ty, Type::Reference(reference) if reference.mutability.is_some()))
                .map(|param| &*param.ty);
        }
        if self.kind != Kind::Input {
            return None;
        }
        let mut not_ctx = self.params().filter(|param| {
            !matches!(&*param.ty, Type::Reference(reference) if reference.mutability.is_some())
        });
        match (not_ctx.next(), not_ctx.next()) {
            (Some(param), None) => Some(&param.ty),
            _ => None,
        }
    }
}

/// Parses `every = ".."` or `every_ms = ..` of an `#[on_tick]`.
fn tick_interval(attr: &Attribute, errors: &Errors) -> Option<Duration> {
    let usage = "`#[on_tick(every = \"100ms\")]` or `#[on_tick(every_ms = 100)]`";
    let list = match &attr.meta {
        Meta::List(list) => list,
        Meta::Path(_) => {
            errors.at(
                attr,
                format_args!("`#[on_tick]` needs an interval: {usage}"),
            );
            return None;
        }
        Meta::NameValue(_) => {
            errors.at(attr, format_args!("expected {usage}"));
            return None;
        }
    };
    let mut every: Option<(Ident, Option<Duration>)> = None;
    args::parse(
        list.tokens.clone(),
        "`#[on_tick]`",
        &[EVERY, EVERY_MS],
        errors,
        |_| None,
        |key, input| {
            if let Some((first, _)) = &every
                && first != key
            {
                errors.at(key, "`every` and `every_ms` cannot both be set; keep one");
            }
            let interval = if key == EVERY {
                if input.peek(LitStr) {
                    let text: LitStr = input.parse()?;
                    duration::parse(&text.value())
                        .map_err(|message| syn::Error::new(text.span(), message))
                } else {
                    let value: syn::Expr = input.parse()?;
                    Err(syn::Error::new_spanned(
                        value,
                        "`every` takes a string such as \"100ms\"; for a number of milliseconds use `every_ms = 100`",
                    ))
                }
            } else {
                let millis: LitInt = input.parse()?;
                match millis.base10_parse::<u64>()? {
                    0 => Err(syn::Error::new(
                        millis.span(),
                        "the interval must be greater than zero",
                    )),
                    millis => Ok(Duration::from_millis(millis)),
                }
            };
            every = Some((
                key.clone(),
                interval.map_err(|error| errors.push(error)).ok(),
            ));
            Ok(())
        },
    );
    match every {
        Some((_, interval)) => interval,
        None => {
            // With tokens but no interval, `args::parse` has said what is wrong.
            if list.tokens.is_empty() {
                errors.at(
                    attr,
                    format_args!("`#[on_tick]` needs an interval: {usage}"),
                );
            }
            None
        }
    }
}

/// The attributes among `attrs` that decide whether the method exists:
/// `#[cfg]`s, and `#[cfg_attr]`s cut down to the `cfg`s they apply (an
/// `#[inline]` or `#[allow]` in one means nothing on an enum variant or an
/// impl, and only stays on the method).
fn presence_attrs(attrs: &[Attribute]) -> Vec<Attribute> {
    attrs
        .iter()
        .filter_map(|attr| {
            let meta = presence_meta(&attr.meta)?;
            let mut attr = attr.clone();
            attr.meta = meta;
            Some(attr)
        })
        .collect()
}

/// `meta` when it is a `cfg(..)`; a `cfg_attr(predicate, ..)` keeping only
/// the (possibly nested) `cfg`s it applies, when it applies any; else `None`.
fn presence_meta(meta: &Meta) -> Option<Meta> {
    if meta.path().is_ident("cfg") {
        return Some(meta.clone());
    }
    if !meta.path().is_ident("cfg_attr") {
        return None;
    }
    let Meta::List(list) = meta else {
        return None;
    };
    // A malformed `cfg_attr` is left for rustc to report on the method.
    let parsed = list
        .parse_args_with(syn::punctuated::Punctuated::<Meta, syn::Token![,]>::parse_terminated)
        .ok()?;
    let mut parts = parsed.into_iter();
    let predicate = parts.next()?;
    let kept: Vec<Meta> = parts.filter_map(|part| presence_meta(&part)).collect();
    if kept.is_empty() {
        return None;
    }
    let mut list = list.clone();
    list.tokens = quote::quote!(#predicate, #(#kept),*);
    Some(Meta::List(list))
}

/// Removes the handler attributes from `attrs`, returning them in order.
fn take_handler_attrs(attrs: &mut Vec<Attribute>) -> Vec<(Kind, Attribute)> {
    let mut taken = Vec::new();
    attrs.retain(|attr| match Kind::of(attr) {
        Some(kind) => {
            taken.push((kind, attr.clone()));
            false
        }
        None => true,
    });
    taken
}

/// `item` without handler attributes on the methods of an impl, for
/// re-emitting an item the attribute was misplaced on.
pub(crate) fn strip_handler_attrs(mut item: Item) -> Item {
    if let Item::Impl(item) = &mut item {
        for impl_item in &mut item.items {
            if let ImplItem::Fn(method) = impl_item {
                take_handler_attrs(&mut method.attrs);
            }
        }
    }
    item
}

/// The last identifier of the self type's path (`Echo` in `impl crate::Echo`).
fn self_name(self_ty: &Type) -> Option<Ident> {
    match self_ty {
        Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|last| last.ident.clone())
        }
        _ => None,
    }
}

/// Whether the self type's path carries generic arguments (`Echo<T>`).
pub(crate) fn has_generic_args(self_ty: &Type) -> bool {
    match self_ty {
        Type::Path(path) => path
            .path
            .segments
            .iter()
            .any(|segment| !matches!(segment.arguments, PathArguments::None)),
        _ => false,
    }
}

/// Whether `tokens` mention `Self` anywhere.
pub(crate) fn mentions_self(tokens: &impl ToTokens) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            proc_macro2::TokenTree::Ident(ident) => ident == "Self",
            proc_macro2::TokenTree::Group(group) => walk(group.stream()),
            _ => false,
        })
    }
    walk(tokens.to_token_stream())
}
