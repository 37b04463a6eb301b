//! Where command output goes (stdout or a file), and how a closed pipe is told apart
//! from a real error.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// Writes `text` to `path`, or to stdout when no path is given.
pub fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(path) => fs_err::write(path, text).with_context(|| format!("writing {}", path.display())),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(())
        }
    }
}

/// Whether an error is stdout closed by the reader (`smap build ... | head`), which is
/// not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}
