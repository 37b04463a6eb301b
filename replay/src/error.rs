//! Typed errors of the recording format: every way a recording or a kubectl file can be unusable.

use std::path::PathBuf;

/// Why reading or writing a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The path is not a recording directory (no `recording.json` and no segments).
    #[error("{path}: not an smap recording (no recording.json or segment files)")]
    NotARecording {
        /// The path given.
        path: PathBuf,
    },
    /// A Parquet file is corrupt or truncated, or could not be written.
    #[error("{path}: bad Parquet segment: {source}")]
    Parquet {
        /// The segment file.
        path: PathBuf,
        /// What the Parquet library reported.
        source: parquet::errors::ParquetError,
    },
    /// Arrow rejected a batch (a bug in the writer if it happens on write).
    #[error("{path}: {source}")]
    Arrow {
        /// The segment file.
        path: PathBuf,
        /// What Arrow reported.
        source: arrow_schema::ArrowError,
    },
    /// The recording was written with a schema version this smap cannot read.
    #[error(
        "{path}: recording schema version {found} is not supported (this smap reads versions {oldest} to {supported})"
    )]
    SchemaVersion {
        /// The file that declared the version.
        path: PathBuf,
        /// The version found.
        found: String,
        /// The oldest version this build reads.
        oldest: u32,
        /// The newest version this build reads (it reads every one from `oldest`).
        supported: u32,
    },
    /// A segment's columns do not match the documented schema.
    #[error("{path}: column `{column}`: {reason}")]
    Schema {
        /// The segment file.
        path: PathBuf,
        /// The column at fault.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A background decoding thread could not be started or failed.
    #[error("cannot decode in the background: {reason}")]
    Thread {
        /// What went wrong.
        reason: String,
    },
    /// A value in a segment cannot be decoded (unknown kind, bad IP address...).
    #[error("{path}: column `{column}` holds an invalid value {value:?}")]
    BadValue {
        /// The segment file.
        path: PathBuf,
        /// The column at fault.
        column: &'static str,
        /// The offending value.
        value: String,
    },
    /// `recording.json` is not valid.
    #[error("{path}: invalid recording metadata: {source}")]
    Meta {
        /// The metadata file.
        path: PathBuf,
        /// What the JSON parser reported.
        source: serde_json::Error,
    },
    /// A kubectl JSON file cannot be used as Kubernetes state.
    #[error("{path}: {reason}")]
    KubectlJson {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A scenario description cannot be simulated.
    #[error("scenario: {0}")]
    Scenario(String),
}

impl ReplayError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ReplayError {
        let path = path.into();
        move |source| ReplayError::Io { path, source }
    }

    pub(crate) fn parquet(path: impl Into<PathBuf>) -> impl FnOnce(parquet::errors::ParquetError) -> ReplayError {
        let path = path.into();
        move |source| ReplayError::Parquet { path, source }
    }

    pub(crate) fn arrow(path: impl Into<PathBuf>) -> impl FnOnce(arrow_schema::ArrowError) -> ReplayError {
        let path = path.into();
        move |source| ReplayError::Arrow { path, source }
    }
}

/// Result with [`ReplayError`].
pub type Result<T, E = ReplayError> = std::result::Result<T, E>;
