#[sansio::task]
pub enum Media {
    Echo,
}

fn main() {}
