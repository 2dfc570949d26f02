//! One-line messages of an error and its causes, for logs, responses and the command line.

use std::error::Error;
use std::fmt;

/// Displays an error followed by the messages of its causes (its `source()` chain), each after
/// ": ".
///
/// A cause whose message the text so far already contains is skipped, because some errors repeat
/// their cause in their own message: deadpool's `PoolError` and [`AdminError`]'s `Pool` and
/// `Database` variants do. `tokio_postgres::Error` does not, so its cause, such as "Connection
/// refused", is printed after it.
///
/// [`AdminError`]: crate::admin::AdminError
pub(crate) struct ErrorChain<'a>(pub(crate) &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&with_causes(self.0.to_string(), self.0.source()))
    }
}

/// Returns `message` followed by the messages of `cause` and of its own causes, such as
/// "Connection refused", that the text does not contain yet.
pub(crate) fn with_causes(
    mut message: String,
    mut cause: Option<&(dyn Error + 'static)>,
) -> String {
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    message
}
