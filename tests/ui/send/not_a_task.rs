use sansio::testing::TaskHarness;

pub struct Plain;

fn main() {
    let _ = TaskHarness::new(Plain);
}
