//! The smallest task: a unit struct and an empty impl block.

#[sansio::task]
struct Nothing;

#[sansio::task]
impl Nothing {}

fn main() {
    let mut nothing = sansio::testing::TaskHarness::new(Nothing);
    let _: Vec<()> = nothing.drain();
}
