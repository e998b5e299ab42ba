#[sansio::task]
fn echo() {}

fn main() {
    echo();
}
