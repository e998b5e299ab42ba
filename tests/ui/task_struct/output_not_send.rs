use std::rc::Rc;

#[sansio::task(output = Rc<u8>)]
pub struct Echo;

fn main() {}
