//! The rules a task declaration must follow. Each broken rule is reported at
//! the user's tokens that break it; all of them, in one compile.

use quote::ToTokens;
use syn::{ReturnType, Type};

use super::parse::{Handler, Kind, StructDecl, TaskImpl, has_generic_args, mentions_self};
use crate::errors::Errors;

/// Why tasks cannot be generic, for every place generics can appear.
const NOT_GENERIC: &str = "#[sansio::task] does not support generic tasks: a worker holds its tasks by concrete type. \
     Make the task type concrete; its fields may still use generic types";

pub(crate) fn struct_decl(decl: &StructDecl, errors: &Errors) {
    let generics = &decl.item.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.at(generics, NOT_GENERIC);
    }
}

pub(crate) fn task_impl(task: &TaskImpl, errors: &Errors) {
    let generics = &task.item.generics;
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.at(generics, NOT_GENERIC);
    }
    let self_ty = &task.item.self_ty;
    if task.name.is_none() {
        errors.at(
            self_ty,
            "#[sansio::task] needs the task's struct by name, as in `impl Echo { .. }`",
        );
    } else if generics.params.is_empty() && has_generic_args(self_ty) {
        errors.at(self_ty, NOT_GENERIC);
    }
    for handler in &task.handlers {
        signature(handler, errors);
    }
    one_of_each_hook(&task.handlers, errors);
    one_handler_per_input(&task.handlers, errors);
}

/// A handler is `fn name(&mut self, ctx: &mut Ctx<Self>)`, plus `input: T`
/// for `#[on_input]`: synchronous, not generic, returning nothing.
fn signature(handler: &Handler, errors: &Errors) {
    let (sig, kind) = (&handler.sig, handler.kind);
    let (attribute, name, expected) = (kind.attribute(), &sig.ident, kind.signature());
    let Some(receiver) = sig.receiver() else {
        errors.at(
            name,
            format_args!(
                "`#[{attribute}]` needs a method taking `&mut self`, but `{name}` is an associated function; \
                 a handler takes `{expected}`"
            ),
        );
        return;
    };
    let wrong_receiver = match (
        &receiver.reference,
        &receiver.mutability,
        &receiver.colon_token,
    ) {
        (Some(_), Some(_), None) => None,
        (Some(_), None, None) => Some("not `&self`: a handler changes the task's state"),
        (None, _, None) => Some("not `self`: the task lives on after the call"),
        (_, _, Some(_)) => Some("written exactly so"),
    };
    if let Some(why) = wrong_receiver {
        errors.at(
            receiver,
            format_args!(
                "a handler takes `&mut self`, {why}; `#[{attribute}]` handlers take `{expected}`"
            ),
        );
    }
    if let Some(asyncness) = &sig.asyncness {
        errors.at(
            asyncness,
            "handlers cannot be `async`: a task is a state machine; queue actions on `ctx` and return",
        );
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "handlers cannot be `unsafe`");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.at(
            &sig.generics,
            "handlers cannot be generic: each input of a task is one concrete type",
        );
    }
    let params: Vec<_> = handler.params().collect();
    let returns = match &sig.output {
        ReturnType::Type(_, ty) if !matches!(&**ty, Type::Tuple(unit) if unit.elems.is_empty()) => {
            Some(ty)
        }
        _ => None,
    };
    // An `#[on_request]` handler returns its answer, or takes a responder
    // (a third parameter) to answer later.
    let answers_later = kind == Kind::Request && params.len() == 3;
    match (kind, returns) {
        (Kind::Request, None) if !answers_later => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format_args!(
                "an `#[on_request]` handler returns the answer (`-> <R as Request>::Response`), \
                 or takes a `Responder<R>` as a third parameter to answer later: `{expected}`"
            ),
        )),
        (Kind::Request, Some(ty)) if answers_later => errors.at(
            ty,
            "a handler that takes a `Responder` answers through it and returns nothing",
        ),
        (Kind::Request, _) => {}
        (_, Some(ty)) => errors.at(
            ty,
            "handlers return nothing: queue outputs on the context, as in `ctx.emit(..)`",
        ),
        (_, None) => {}
    }
    let wanted = match kind {
        Kind::Input => 2,
        Kind::Request if answers_later => 3,
        Kind::Request => 2,
        // A keyed timer's handler takes the key.
        Kind::Timer if params.len() == 2 => 2,
        _ => 1,
    };
    if matches!(kind, Kind::Input | Kind::Request)
        && params.len() == 2
        && !is_mut_ref(&params[0].ty)
        && is_mut_ref(&params[1].ty)
    {
        errors.at(
            &sig.inputs,
            format_args!(
                "parameters in the wrong order: an `#[on_input]` handler takes `{expected}`"
            ),
        );
        return;
    }
    if params.len() > wanted {
        let extra = params[wanted..].iter().map(|param| param.to_token_stream());
        errors.at(
            quote::quote!(#(#extra)*),
            format_args!("too many parameters: `#[{attribute}]` handlers take `{expected}`"),
        );
        return;
    }
    if params.len() < wanted {
        let missing = if matches!(kind, Kind::Input | Kind::Request) && params.len() == 1 {
            "the input parameter is missing"
        } else {
            "parameters are missing"
        };
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            format_args!("{missing}: `#[{attribute}]` handlers take `{expected}`"),
        ));
        return;
    }
    if !is_mut_ref(&params[0].ty) {
        errors.at(
            &params[0].ty,
            format_args!("the context parameter is `&mut Ctx<Self>`; `#[{attribute}]` handlers take `{expected}`"),
        );
    }
    if matches!(kind, Kind::Input | Kind::Request)
        && let Some(problem) = input_problem(&params[1].ty)
    {
        errors.at(&params[1].ty, problem);
    }
}

/// Why `ty` cannot be an input type, if it cannot: an input is moved into
/// the task, so it is an owned (or `&'static`), named type.
pub(crate) fn input_problem(ty: &Type) -> Option<&'static str> {
    let problem = match ty {
        Type::Reference(reference)
            if reference
                .lifetime
                .as_ref()
                .is_none_or(|lifetime| lifetime.ident != "static") =>
        {
            "the input is moved into the task: take it by value (`T`, not `&T`); only `&'static` references can be inputs"
        }
        Type::ImplTrait(_) | Type::Infer(_) => "handlers cannot be generic: name the input's type",
        _ if mentions_self(ty) => {
            "write the type's name instead of `Self`: the input enum is declared outside the impl"
        }
        _ => return None,
    };
    Some(problem)
}

/// At most one handler for each hook other than `#[on_input]` (for
/// `#[on_timer]`: one unkeyed and one keyed).
fn one_of_each_hook(handlers: &[Handler], errors: &Errors) {
    for (index, handler) in handlers.iter().enumerate() {
        if matches!(handler.kind, Kind::Input | Kind::Request) {
            continue;
        }
        let keyed = handler.timer_key().is_some();
        if let Some(first) = handlers[..index]
            .iter()
            .find(|earlier| earlier.kind == handler.kind && earlier.timer_key().is_some() == keyed)
        {
            let most = match (handler.kind, keyed) {
                (Kind::Timer, true) => "at most one keyed `#[on_timer]` (one key type)",
                (Kind::Timer, false) => "at most one `#[on_timer]` without a key",
                _ => "at most one",
            };
            errors.at(
                &handler.attr,
                format_args!(
                    "`#[{}]` is already on `{}`; a task has {most}",
                    handler.kind.attribute(),
                    first.sig.ident
                ),
            );
        }
    }
}

/// One `#[on_input]` handler per input type, and one variant name per
/// handler.
fn one_handler_per_input(handlers: &[Handler], errors: &Errors) {
    let inputs: Vec<&Handler> = handlers
        .iter()
        .filter(|handler| matches!(handler.kind, Kind::Input | Kind::Request))
        .collect();
    for (index, handler) in inputs.iter().enumerate() {
        let earlier = &inputs[..index];
        if let Some(ty) = handler.input_ty() {
            let key = ty.to_token_stream().to_string();
            let same_type = |earlier: &&&Handler| {
                earlier.kind == handler.kind
                    && earlier
                        .input_ty()
                        .is_some_and(|other| other.to_token_stream().to_string() == key)
            };
            if let Some(first) = earlier.iter().find(same_type) {
                errors.at(
                    ty,
                    format_args!(
                        "this input type already has a handler, `{}`; a task has one #[on_input] handler per input type",
                        first.sig.ident
                    ),
                );
                continue;
            }
        }
        let variant = handler.variant();
        if let Some(first) = earlier.iter().find(|earlier| earlier.variant() == variant) {
            errors.at(
                &handler.sig.ident,
                format_args!(
                    "`{}` and `{}` would both be the input variant `{variant}`; rename one",
                    first.sig.ident, handler.sig.ident
                ),
            );
        }
    }
}

fn is_mut_ref(ty: &Type) -> bool {
    matches!(ty, Type::Reference(reference) if reference.mutability.is_some())
}
