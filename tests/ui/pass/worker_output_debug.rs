//! The generated output enum's `Debug` shows a task's output when it is
//! `Debug`, and `(..)` when it is not.

use sansio::prelude::*;

#[derive(Debug)]
pub struct Shown(pub u32);

/// No `Debug`.
pub struct Hidden;

#[sansio::task(output = Shown)]
pub struct A;

#[sansio::task]
impl A {}

#[sansio::task(output = Hidden)]
pub struct B;

#[sansio::task]
impl B {}

#[sansio::worker]
pub enum Pair {
    A(A),
    B(B),
}

fn main() {
    assert_eq!(format!("{:?}", PairOutput::A(Shown(7))), "PairOutput::A(Shown(7))");
    assert_eq!(format!("{:?}", PairOutput::B(Hidden)), "PairOutput::B(..)");
}
