#[sansio::task]
pub struct Echo<T> {
    inner: T,
}

fn main() {}
