#[sansio::task]
pub struct Echo;

#[sansio::task]
impl Echo {
    #[on_tick(every = "1s")]
    type Packet = Vec<u8>;
}

fn main() {}
