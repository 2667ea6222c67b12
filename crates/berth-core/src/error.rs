//! The error vocabulary every Berth crate speaks.
//!
//! An [`Error`] is a [`ErrorKind`] plus a human message. Kinds map to gRPC codes
//! here (both ways) and to HTTP statuses in the gateway, and nowhere else, so a
//! "not found" raised in the image service is a 404 at the Docker API even when the
//! two run in different processes.

use std::fmt;

/// The kind of a failure, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The named object does not exist (HTTP 404).
    NotFound,
    /// The request is malformed or a value is out of range (HTTP 400).
    InvalidArgument,
    /// The object to create exists already (HTTP 409).
    AlreadyExists,
    /// The operation conflicts with the object's state (HTTP 409).
    Conflict,
    /// The caller may not do this (HTTP 403).
    Forbidden,
    /// The caller is not authenticated (HTTP 401).
    Unauthenticated,
    /// A dependency (another service, the database) cannot be reached (HTTP 503).
    Unavailable,
    /// The operation is not supported (HTTP 501).
    NotImplemented,
    /// Anything else: a bug or an I/O failure (HTTP 500).
    Internal,
}

/// An error with a kind and a message. Messages are lowercase, without a trailing period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

/// Result with Berth's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
    /// A [`ErrorKind::NotFound`] error.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A [`ErrorKind::InvalidArgument`] error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    /// A [`ErrorKind::AlreadyExists`] error.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// A [`ErrorKind::Forbidden`] error.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    /// A [`ErrorKind::Conflict`] error.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// A [`ErrorKind::Unavailable`] error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// A [`ErrorKind::NotImplemented`] error.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }
    /// A [`ErrorKind::Internal`] error.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message of this error.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Prefixes the message with context, keeping the kind.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self { kind: self.kind, message: format!("{context}: {}", self.message) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput | std::io::ErrorKind::UnexpectedEof => {
                ErrorKind::InvalidArgument
            }
            std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            std::io::ErrorKind::PermissionDenied => ErrorKind::Forbidden,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, err.to_string())
    }
}

#[cfg(feature = "db")]
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::RowNotFound => Self::not_found("record not found"),
            ref e if crate::db::is_unavailable(e) => Self::unavailable(format!("database unavailable: {err}")),
            other => Self::internal(format!("database error: {other}")),
        }
    }
}

#[cfg(feature = "db")]
impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(e) if crate::db::is_unavailable(&e) => {
                Self::unavailable(format!("database migration failed: {e}"))
            }
            other => Self::internal(format!("database migration failed: {other}")),
        }
    }
}

// === gRPC mapping: the only place kinds meet tonic codes ===

impl ErrorKind {
    /// The gRPC code that carries this kind across a hop.
    pub fn to_code(self) -> tonic::Code {
        use tonic::Code;
        match self {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::Conflict => Code::FailedPrecondition,
            ErrorKind::Forbidden => Code::PermissionDenied,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::NotImplemented => Code::Unimplemented,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind a gRPC code stands for; the inverse of [`ErrorKind::to_code`].
    pub fn from_code(code: tonic::Code) -> Self {
        use tonic::Code;
        match code {
            Code::NotFound => ErrorKind::NotFound,
            Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidArgument,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::Conflict,
            Code::PermissionDenied => ErrorKind::Forbidden,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            Code::Unimplemented => ErrorKind::NotImplemented,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        tonic::Status::new(err.kind.to_code(), err.message)
    }
}

impl From<tonic::Status> for Error {
    fn from(status: tonic::Status) -> Self {
        let kind = ErrorKind::from_code(status.code());
        let message = if status.message().is_empty() {
            format!("{:?}", status.code()).to_lowercase()
        } else {
            status.message().to_string()
        };
        Error::new(kind, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 9] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidArgument,
        ErrorKind::AlreadyExists,
        ErrorKind::Conflict,
        ErrorKind::Forbidden,
        ErrorKind::Unauthenticated,
        ErrorKind::Unavailable,
        ErrorKind::NotImplemented,
        ErrorKind::Internal,
    ];

    #[test]
    fn every_kind_survives_a_grpc_round_trip() {
        for kind in ALL {
            let err = Error::new(kind, "no such image: busybox");
            let back = Error::from(tonic::Status::from(err.clone()));
            assert_eq!(back, err, "{kind:?}");
        }
    }

    #[test]
    fn context_keeps_kind() {
        let err = Error::not_found("layer missing").context("load");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.message(), "load: layer missing");
    }

    #[test]
    fn io_errors_get_kinds() {
        let err = Error::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        let err = Error::from(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
}
