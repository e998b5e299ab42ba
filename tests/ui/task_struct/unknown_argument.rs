#[sansio::task(outputs = u64)]
pub struct Echo;

fn main() {}
