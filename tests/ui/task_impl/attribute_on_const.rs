#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_input]
    const LIMIT: usize = 10;
}

fn main() {}
