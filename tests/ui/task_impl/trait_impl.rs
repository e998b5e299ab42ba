#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Default for Echo {
    fn default() -> Self {
        Echo
    }
}

fn main() {}
