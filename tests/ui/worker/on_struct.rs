#[sansio::worker]
pub struct Media {
    workers: usize,
}

fn main() {}
