//! The typed model of a `#[sansio::worker]` enum, with its rules: no
//! generics, at least one variant, each a one-field tuple variant holding a
//! task type, no task type twice.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{Fields, Ident, ItemEnum, Path, Type};

use crate::args;
use crate::errors::Errors;

/// `#[sansio::worker(output = .., crate = ..)] enum Name { Task(Task), .. }`.
pub(crate) struct WorkerEnum {
    pub(crate) item: ItemEnum,
    pub(crate) output: Option<Type>,
    pub(crate) krate: Option<Path>,
    /// The bus `(channel, event)` types, when declared.
    pub(crate) bus: Option<(Type, Type)>,
    /// The variants that follow the rules, in order.
    pub(crate) variants: Vec<TaskVariant>,
}

/// `Name(TaskType)`.
pub(crate) struct TaskVariant {
    pub(crate) name: Ident,
    pub(crate) task: Type,
}

impl WorkerEnum {
    pub(crate) fn from_syn(args: TokenStream, item: ItemEnum, errors: &Errors) -> Self {
        let args::DeclArgs { output, krate, bus } =
            args::decl_args(args, "#[sansio::worker]", errors);
        let generics = &item.generics;
        if !generics.params.is_empty() || generics.where_clause.is_some() {
            errors.at(
                generics,
                "#[sansio::worker] does not support generics: a worker kind is a fixed set of task types",
            );
        }
        if item.variants.is_empty() {
            errors.at(
                &item.ident,
                "a worker needs at least one task type: `enum Media { Echo(Echo) }`",
            );
        }
        let mut variants: Vec<TaskVariant> = Vec::new();
        for variant in &item.variants {
            if let Some((eq, discriminant)) = &variant.discriminant {
                errors.at(
                    quote::quote!(#eq #discriminant),
                    "worker variants take no discriminant",
                );
            }
            let task = match &variant.fields {
                Fields::Unnamed(fields) if fields.unnamed.len() == 1 => {
                    fields.unnamed[0].ty.clone()
                }
                Fields::Unnamed(fields) => {
                    errors.at(
                        fields,
                        format_args!(
                            "a worker variant holds exactly one task type: `{}(TaskType)`",
                            variant.ident
                        ),
                    );
                    continue;
                }
                Fields::Named(fields) => {
                    errors.at(
                        fields,
                        format_args!(
                            "a worker variant is a tuple variant holding its task type: `{}(TaskType)`",
                            variant.ident
                        ),
                    );
                    continue;
                }
                Fields::Unit => {
                    errors.at(
                        variant,
                        format_args!(
                            "a worker variant holds its task type: `{0}({0})`",
                            variant.ident
                        ),
                    );
                    continue;
                }
            };
            let key = task.to_token_stream().to_string();
            if let Some(first) = variants
                .iter()
                .find(|earlier| earlier.task.to_token_stream().to_string() == key)
            {
                errors.at(
                    &task,
                    format_args!(
                        "this task type is already the variant `{}`; a worker has one variant per task type",
                        first.name
                    ),
                );
                continue;
            }
            variants.push(TaskVariant {
                name: variant.ident.clone(),
                task,
            });
        }
        WorkerEnum {
            item,
            output,
            krate,
            bus,
            variants,
        }
    }
}
