#[sansio::task]
pub struct Echo;

#[sansio::task(output = u64)]
impl Echo {}

fn main() {}
