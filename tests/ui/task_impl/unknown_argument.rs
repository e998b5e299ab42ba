#[sansio::task]
pub struct Echo;

#[sansio::task(workers = 2)]
impl Echo {}

fn main() {}
