//! Writes the code for a task: the `TaskDecl` half from the struct, and from
//! the impl block the input enum, its conversions, the `Handles` bounds and
//! the `Task` impl. Generated code names the runtime only through
//! `<crate>::__private`.

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Ident, Path, Type};

use super::parse::{Handler, Kind, StructDecl, TaskImpl, has_generic_args};
use super::validate::input_problem;
use crate::span::respan;

/// The path of the generated code's support module.
fn private(krate: Option<&Path>) -> TokenStream {
    match krate {
        Some(krate) => quote!(#krate::__private),
        None => quote!(::sansio::__private),
    }
}

/// The struct, unchanged, and its `TaskDecl` impl (output type and name).
pub(crate) fn struct_decl(decl: &StructDecl) -> TokenStream {
    let item = &decl.item;
    // A generic struct has been reported; an impl without its parameters would
    // only add errors.
    if !item.generics.params.is_empty() {
        return item.to_token_stream();
    }
    let private = private(decl.krate.as_ref());
    let name = &item.ident;
    let name_text = name.unraw().to_string();
    let output = match &decl.output {
        Some(output) => output.to_token_stream(),
        None => quote!(()),
    };
    let bus = match &decl.bus {
        Some((channel, event)) => quote!(type Bus = #private::Bus<#channel, #event>;),
        None => quote!(type Bus = #private::NoBus;),
    };
    quote! {
        #item

        #[automatically_derived]
        impl #private::TaskDecl for #name {
            type Output = #output;
            const NAME: &'static str = #name_text;
            #bus
        }
    }
}

/// The user's impl block (without the handler attributes) and everything the
/// handlers imply. With `valid == false` the `Task` impl is a stand-in whose
/// dispatch is unreachable: the crate will not build, but the rest of it still
/// type-checks against the input enum, so the user sees only the real errors.
pub(crate) fn task_impl(task: &TaskImpl, valid: bool) -> TokenStream {
    let item = &task.item;
    let self_ty = &item.self_ty;
    let Some(name) = &task.name else {
        return item.to_token_stream();
    };
    if !item.generics.params.is_empty() || has_generic_args(self_ty) {
        return item.to_token_stream();
    }
    let private = private(task.krate.as_ref());
    let enum_name = Ident::new(&format!("{}Input", name.unraw()), name.span());
    let inputs = distinct_inputs(&task.handlers);

    let input_enum = input_enum(name, &enum_name, &inputs, &private);
    let conversions = inputs.iter().map(|(handler, request)| {
        let variant = handler.variant();
        let ty = payload(handler, request, &private);
        let cfgs = &handler.cfgs;
        // A request type is answered, not just handled.
        let answers = (handler.kind == Kind::Request).then(|| {
            quote! {
                #(#cfgs)*
                #[automatically_derived]
                impl #private::Answers<#request> for #self_ty {
                    #[inline]
                    fn wrap_request(incoming: #private::Incoming<#request>) -> #enum_name {
                        #enum_name::#variant(incoming)
                    }
                }
            }
        });
        quote! {
            #answers

            #(#cfgs)*
            #[automatically_derived]
            impl #private::From<#ty> for #enum_name {
                #[inline]
                fn from(input: #ty) -> Self {
                    #enum_name::#variant(input)
                }
            }

            #(#cfgs)*
            #[automatically_derived]
            impl #private::Handles<#ty> for #self_ty {
                #[inline]
                fn wrap(input: #ty) -> #enum_name {
                    #enum_name::#variant(input)
                }

                #[inline]
                #[allow(unreachable_patterns)]
                fn unwrap(input: #enum_name) -> #private::Option<#ty> {
                    match input {
                        #enum_name::#variant(input) => #private::Option::Some(input),
                        _ => #private::Option::None,
                    }
                }

                #[inline]
                #[allow(unreachable_patterns)]
                fn unwrap_ref(input: &#enum_name) -> #private::Option<&#ty> {
                    match input {
                        #enum_name::#variant(input) => #private::Option::Some(input),
                        _ => #private::Option::None,
                    }
                }
            }
        }
    });
    let debug_arms = inputs.iter().map(|(handler, _)| {
        let variant = handler.variant();
        let text = format!("{enum_name}::{variant}(..)");
        let cfgs = &handler.cfgs;
        quote!(#(#cfgs)* #enum_name::#variant(_) => f.write_str(#text),)
    });
    let task_impl = task_trait_impl(task, &private, &enum_name, &inputs, valid);
    // With the handler compiled out (`#[cfg]`), `TimerKey` stays its key
    // type but nothing can arm a timer of it.
    let keyed_timer = task
        .handlers
        .iter()
        .find_map(|handler| Some((handler.timer_key()?, &handler.cfgs)))
        .map(|(key, cfgs)| {
            quote! {
                #(#cfgs)*
                #[automatically_derived]
                impl #private::TimerKeyOf<#self_ty> for #key {
                #[inline]
                fn into_timer_key(self) -> #key {
                    self
                }
            }
            }
        });

    quote! {
        #item

        #input_enum

        const _: () = {
            #(#conversions)*

            #keyed_timer

            #[automatically_derived]
            impl #private::Handles<#enum_name> for #self_ty {
                #[inline]
                fn wrap(input: #enum_name) -> #enum_name {
                    input
                }

                #[inline]
                fn unwrap(input: #enum_name) -> #private::Option<#enum_name> {
                    #private::Option::Some(input)
                }

                #[inline]
                fn unwrap_ref(input: &#enum_name) -> #private::Option<&#enum_name> {
                    #private::Option::Some(input)
                }
            }

            // Two replies no task asks for, hidden from diagnostics: they keep
            // the compiler from guessing the request of a `ctx.request` from
            // the task's one reply handler, so a missing one is reported
            // with its request type (`Reply<GetCount>`, not `Reply<_>`).
            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl #private::Handles<#private::Reply<#private::Unanswerable>> for #self_ty {
                fn wrap(input: #private::Reply<#private::Unanswerable>) -> #enum_name {
                    #private::unasked_reply(input)
                }

                fn unwrap(_: #enum_name) -> #private::Option<#private::Reply<#private::Unanswerable>> {
                    #private::Option::None
                }
            }

            #[automatically_derived]
            #[diagnostic::do_not_recommend]
            impl #private::Handles<#private::Reply<#private::Unasked>> for #self_ty {
                fn wrap(input: #private::Reply<#private::Unasked>) -> #enum_name {
                    #private::unasked_reply(input)
                }

                fn unwrap(_: #enum_name) -> #private::Option<#private::Reply<#private::Unasked>> {
                    #private::Option::None
                }
            }

            // Keeps the compiler from guessing a request type from the one
            // the task answers: an unanswered type is then an error that says so.
            #[automatically_derived]
            impl #private::Answers<#private::Unanswerable> for #self_ty {
                fn wrap_request(incoming: #private::Incoming<#private::Unanswerable>) -> #enum_name {
                    match incoming.request {}
                }
            }

            #[automatically_derived]
            impl #private::fmt::Debug for #enum_name {
                fn fmt(&self, f: &mut #private::fmt::Formatter<'_>) -> #private::fmt::Result {
                    match *self {
                        #(#debug_arms)*
                    }
                }
            }

            #task_impl
        };
    }
}

/// The `#[on_input]` handlers whose input type can go in the enum, without
/// repeats (a repeat has been reported).
fn distinct_inputs(handlers: &[Handler]) -> Vec<(&Handler, &Type)> {
    let mut inputs: Vec<(&Handler, &Type)> = Vec::new();
    for handler in handlers {
        let Some(ty) = handler.input_ty() else {
            continue;
        };
        if input_problem(ty).is_some() {
            continue;
        }
        let key = ty.to_token_stream().to_string();
        let repeated = inputs.iter().any(|(earlier, earlier_ty)| {
            earlier.variant() == handler.variant()
                || (earlier.kind == handler.kind && earlier_ty.to_token_stream().to_string() == key)
        });
        if !repeated {
            inputs.push((handler, ty));
        }
    }
    inputs
}

/// `pub enum <Name>Input { Variant(Type), .. }`.
///
/// It is `pub` because it is the `Task::Input` of the task, which may be as
/// public as the task itself; the impl block cannot see the struct's
/// visibility, so the enum takes the widest and silences the lints about it.
/// The type a handler's variant holds: its input, or for an `#[on_request]`
/// the request with its responder.
fn payload(handler: &Handler, ty: &Type, private: &TokenStream) -> TokenStream {
    if handler.kind == Kind::Request {
        quote!(#private::Incoming<#ty>)
    } else {
        ty.to_token_stream()
    }
}

fn input_enum(
    name: &Ident,
    enum_name: &Ident,
    inputs: &[(&Handler, &Type)],
    private: &TokenStream,
) -> TokenStream {
    let doc = format!(
        "The inputs of `{name}`, one variant per `#[on_input]` handler.\n\n\
         Generated by `#[sansio::task]`; each handled type converts into it with `From`."
    );
    let variants = inputs.iter().map(|(handler, ty)| {
        let variant = handler.variant();
        let ty = payload(handler, ty, private);
        let doc = format!("Delivered to `{name}::{}`.", handler.sig.ident);
        let cfgs = &handler.cfgs;
        quote! {
            #(#cfgs)*
            #[doc = #doc]
            #variant(#ty),
        }
    });
    quote! {
        #[doc = #doc]
        #[allow(unreachable_pub, private_interfaces)]
        pub enum #enum_name {
            #(#variants)*
        }
    }
}

/// `impl Task for Name`: routes each input and hook to its handler.
fn task_trait_impl(
    task: &TaskImpl,
    private: &TokenStream,
    enum_name: &Ident,
    inputs: &[(&Handler, &Type)],
    valid: bool,
) -> TokenStream {
    let self_ty = &task.item.self_ty;
    let span = self_ty.span();
    // The declaration half, spanned at the self type (the support path too)
    // so that a struct without `#[sansio::task]` is one error at `impl Name`.
    let decl_private = respan(private.clone(), span);
    let decl = quote_spanned! {span=>
        type Output = <#self_ty as #decl_private::TaskDecl>::Output;
        const NAME: &'static str = <#self_ty as #decl_private::TaskDecl>::NAME;
        type Bus = <#self_ty as #decl_private::TaskDecl>::Bus;

        #[inline]
        fn bus_input(input: #decl_private::TaskBusInput<Self>) -> #decl_private::Option<Self::Input> {
            <<Self as #decl_private::Task>::Bus as #decl_private::BusWrap<Self>>::wrap(input)
        }
    };
    let timer_key = task.handlers.iter().find_map(Handler::timer_key);
    let decl = match timer_key {
        Some(key) => quote! {
            #decl
            type TimerKey = #key;
        },
        None => quote! {
            #decl
            type TimerKey = #private::NoTimerKey;
        },
    };
    if !valid {
        return quote! {
            #[automatically_derived]
            impl #private::Task for #self_ty {
                type Input = #enum_name;
                #decl

                fn on_input(&mut self, ctx: &mut #private::Ctx<Self>, input: Self::Input) {
                    let _ = (ctx, input);
                    #private::unreachable!("stand-in for a #[sansio::task] impl that failed to compile")
                }
            }
        };
    }
    let input_arms = inputs.iter().map(|(handler, request)| {
        let (variant, method) = (handler.variant(), &handler.sig.ident);
        if handler.kind == Kind::Request {
            return request_arm(handler, request, private, enum_name);
        }
        // Spanned at the handler, so a context parameter of the wrong type is
        // reported there.
        let call = quote_spanned!(method.span()=> Self::#method(self, ctx, input));
        let cfgs = &handler.cfgs;
        quote!(#(#cfgs)* #enum_name::#variant(input) => #call,)
    });
    let hooks = task
        .handlers
        .iter()
        .filter(|handler| !matches!(handler.kind, Kind::Input | Kind::Request))
        .map(|handler| {
            let method = &handler.sig.ident;
            if handler.timer_key().is_some() {
                let call = quote_spanned!(method.span()=> Self::#method(self, ctx, key));
                let cfgs = &handler.cfgs;
                return quote! {
                    #(#cfgs)*
                    #[inline]
                    fn on_keyed_timer(&mut self, ctx: &mut #private::Ctx<Self>, key: Self::TimerKey) {
                        #call
                    }
                };
            }
            let hook = format_ident!("{}", handler.kind.attribute());
            let call = quote_spanned!(method.span()=> Self::#method(self, ctx));
            let cfgs = &handler.cfgs;
            quote! {
                #(#cfgs)*
                #[inline]
                fn #hook(&mut self, ctx: &mut #private::Ctx<Self>) {
                    #call
                }
            }
        });
    let tick_interval = task
        .handlers
        .iter()
        .find_map(|handler| Some((handler.every?, &handler.cfgs)))
        .map(|(every, cfgs)| {
            let nanos = Literal::u64_suffixed(
                u64::try_from(every.as_nanos())
                    .expect("intervals are parsed to fit a u64 of nanoseconds"),
            );
            quote! {
                #(#cfgs)*
                const TICK_INTERVAL: #private::Option<#private::Duration> =
                    #private::Option::Some(#private::Duration::from_nanos(#nanos));
            }
        });
    let on_input = if inputs.is_empty() {
        // No inputs: the enum is empty and the context unused.
        quote! {
            fn on_input(&mut self, _: &mut #private::Ctx<Self>, input: Self::Input) {
                match input {}
            }
        }
    } else {
        // With every handler compiled out, the match has no arms and the
        // context goes unused.
        let allow_unused = inputs
            .iter()
            .any(|(handler, _)| !handler.cfgs.is_empty())
            .then(|| quote!(#[allow(unused_variables)]));
        quote! {
            #[inline]
            #allow_unused
            fn on_input(&mut self, ctx: &mut #private::Ctx<Self>, input: Self::Input) {
                match input {
                    #(#input_arms)*
                }
            }
        }
    };
    quote! {
        #[automatically_derived]
        impl #private::Task for #self_ty {
            type Input = #enum_name;
            #decl
            #tick_interval

            #on_input

            #(#hooks)*
        }
    }
}

/// The dispatch of an `#[on_request]`: the handler answers by returning (its
/// return type checked against the request's response type, there), or takes
/// the responder to answer later.
fn request_arm(
    handler: &Handler,
    request: &Type,
    private: &TokenStream,
    enum_name: &Ident,
) -> TokenStream {
    let (variant, method) = (handler.variant(), &handler.sig.ident);
    let answers_later = handler.params().count() == 3;
    let call = if answers_later {
        quote_spanned!(method.span()=> Self::#method(self, ctx, incoming.request, incoming.responder))
    } else {
        let span = match &handler.sig.output {
            syn::ReturnType::Type(_, ty) => ty.span(),
            syn::ReturnType::Default => method.span(),
        };
        // The answer is checked against the request's response type by the
        // `Responds` bound of `respond`, at the return type: a mismatch names
        // `R::Response`, and rustc suggests no edit of generated code.
        let private = respan(private.clone(), span);
        quote_spanned! {span=>
            {
                let answer = Self::#method(self, ctx, incoming.request);
                #private::respond::<_, #request, _>(ctx, incoming.responder, answer);
            }
        }
    };
    let cfgs = &handler.cfgs;
    quote!(#(#cfgs)* #enum_name::#variant(incoming) => #call,)
}
