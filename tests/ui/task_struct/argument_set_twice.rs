#[sansio::task(output = u64, output = u32)]
pub struct Echo;

fn main() {}
