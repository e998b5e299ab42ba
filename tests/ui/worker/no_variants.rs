#[sansio::worker]
pub enum Media {}

fn main() {}
