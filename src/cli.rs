//! The examples' command lines: `--flag value` pairs.

/// Reads `--flag value` pairs from `args`, handing each to `set`, which
/// stores the value and says whether the flag is known and the value valid.
///
/// # Errors
///
/// A message for the user: a flag without a value, an unknown flag (listing
/// `flags`), or a value `set` refused.
pub fn parse(
    args: impl IntoIterator<Item = String>,
    flags: &[&str],
    mut set: impl FnMut(&str, &str) -> Option<Result<(), ()>>,
) -> Result<(), String> {
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else {
            return Err(format!("{flag} needs a value"));
        };
        match set(&flag, &value) {
            Some(Ok(())) => {}
            Some(Err(())) => return Err(format!("{flag}: `{value}` is not valid")),
            None => {
                return Err(format!(
                    "unknown option {flag}; options: {}",
                    flags.join(" ")
                ));
            }
        }
    }
    Ok(())
}

/// Parses `value` into `slot`, for [`parse`]'s setter.
pub fn store<T: std::str::FromStr>(slot: &mut T, value: &str) -> Option<Result<(), ()>> {
    Some(value.parse().map(|parsed| *slot = parsed).map_err(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_are_read_and_mistakes_named() {
        let (mut workers, mut name) = (1usize, String::new());
        let mut set = |flag: &str, value: &str| match flag {
            "--workers" => store(&mut workers, value),
            "--name" => store(&mut name, value),
            _ => None,
        };
        let flags = ["--workers", "--name"];
        assert_eq!(
            parse(args("--workers 3 --name x"), &flags, &mut set),
            Ok(())
        );
        assert_eq!(
            parse(args("--workers"), &flags, &mut set),
            Err("--workers needs a value".into())
        );
        assert_eq!(
            parse(args("--workers many"), &flags, &mut set),
            Err("--workers: `many` is not valid".into())
        );
        assert_eq!(
            parse(args("--speed 9"), &flags, &mut set),
            Err("unknown option --speed; options: --workers --name".into())
        );
        let _ = set;
        assert_eq!((workers, name.as_str()), (3, "x"));
    }
}
