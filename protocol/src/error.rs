//! The error taxonomy shared by the agent, the CLI and the firmware.
//!
//! Every rejection anywhere in IF edge carries an [`ErrorCode`]: a stable number (`IF_ERR_103`), a stable
//! name (`REPLAY_DETECTED`), a one-line message, whether retrying can help, and the exit status the CLI
//! uses. Numbers are grouped by class: `0xx` auth, `1xx` envelope, `2xx` capability and talent, `3xx`
//! limits, `4xx` devices, `5xx` system. Codes are never renumbered; new ones are appended in their class.
//!
//! [`IfError`] pairs a code with a detail line and displays as `IF_ERR_101 INVALID_ENVELOPE: <detail>`.
//! It lives on the stack (the detail is a bounded string), so it works the same on a microcontroller.

use core::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

/// Longest detail text kept in an [`IfError`]; longer text is cut at a character boundary.
pub const DETAIL_CAP: usize = 192;

macro_rules! error_codes {
    ($( $variant:ident = $num:literal, $name:literal, $retry:literal, $msg:literal; )*) => {
        /// A stable IF error code. See the module documentation for the numbering.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( #[doc = $msg] $variant = $num, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name, e.g. `REPLAY_DETECTED`.
            pub const fn name(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name,)* }
            }

            /// The one-line default message.
            pub const fn message(self) -> &'static str {
                match self { $(ErrorCode::$variant => $msg,)* }
            }

            /// Whether sending the same request again later can succeed.
            pub const fn retryable(self) -> bool {
                match self { $(ErrorCode::$variant => $retry,)* }
            }

            /// The code for a number, if there is one.
            pub const fn from_number(n: u16) -> Option<ErrorCode> {
                match n { $($num => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    InvalidSignature = 1, "INVALID_SIGNATURE", false, "signature does not verify";
    InvalidToken = 2, "INVALID_TOKEN", false, "token is malformed or not valid";
    PermissionDenied = 3, "PERMISSION_DENIED", false, "permission denied";
    UnknownKey = 4, "UNKNOWN_KEY", false, "signing key is not known";
    KeyRevoked = 5, "KEY_REVOKED", false, "signing key has been revoked";
    InvalidProof = 6, "INVALID_PROOF", false, "log proof or checkpoint does not verify";
    InvalidEnvelope = 101, "INVALID_ENVELOPE", false, "envelope is malformed";
    ExpiredMessage = 102, "EXPIRED_MESSAGE", false, "message has expired";
    ReplayDetected = 103, "REPLAY_DETECTED", false, "message was already seen";
    OutOfOrder = 104, "OUT_OF_ORDER", false, "sequence number is behind the replay window";
    FutureDated = 105, "FUTURE_DATED", false, "message is dated in the future beyond the allowed skew";
    Duplicate = 106, "DUPLICATE", false, "duplicate of an accepted message; the original reply is returned";
    FrameTooLarge = 107, "FRAME_TOO_LARGE", false, "frame exceeds the size cap";
    NonCanonical = 108, "NON_CANONICAL", false, "body bytes are not the canonical encoding";
    WrongAudience = 109, "WRONG_AUDIENCE", false, "envelope is addressed to another agent";
    SequenceAhead = 110, "SEQUENCE_AHEAD", false, "sequence number runs ahead of the clock bound";
    ResponseTopicDenied = 111, "RESPONSE_TOPIC_DENIED", false, "response topic is outside the reply namespace";
    CapabilityNotAllowed = 201, "CAPABILITY_NOT_ALLOWED", false, "capability is not allowed";
    VersionNotAllowed = 202, "VERSION_NOT_ALLOWED", false, "capability version is not allowed";
    TalentNotFound = 203, "TALENT_NOT_FOUND", false, "talent is not known";
    ScopeDenied = 204, "SCOPE_DENIED", false, "scope is not granted";
    HazardNotAcknowledged = 205, "HAZARD_NOT_ACKNOWLEDGED", false, "hazard was not declared or not allowed";
    ActionNotAllowed = 206, "ACTION_NOT_ALLOWED", false, "action is not allowed";
    ManifestExpired = 207, "MANIFEST_EXPIRED", false, "capability manifest has expired";
    ManifestRollback = 208, "MANIFEST_ROLLBACK", false, "capability manifest would roll back a version";
    BudgetExceeded = 301, "BUDGET_EXCEEDED", false, "budget for the period is spent";
    RateLimitExceeded = 302, "RATE_LIMIT_EXCEEDED", true, "rate limit exceeded";
    CircuitBreakerOpen = 303, "CIRCUIT_BREAKER_OPEN", true, "circuit breaker is open for this device";
    QueueFull = 304, "QUEUE_FULL", true, "device queue is full";
    Superseded = 305, "SUPERSEDED", false, "an emergency action on the device ended the queue; never sent";
    DeviceUnreachable = 401, "DEVICE_UNREACHABLE", true, "device cannot be reached";
    DeviceTimeout = 402, "DEVICE_TIMEOUT", true, "device did not answer in time";
    DeviceRejected = 403, "DEVICE_REJECTED", false, "device rejected the command";
    SystemError = 500, "SYSTEM_ERROR", true, "internal system error";
    WitnessUnavailable = 501, "WITNESS_UNAVAILABLE", true, "witness log cannot be written; nothing was executed";
    StorageFull = 502, "STORAGE_FULL", true, "storage is full; nothing was executed";
    ConfigInvalid = 503, "CONFIG_INVALID", false, "configuration is invalid";
    IdentityConflict = 504, "IDENTITY_CONFLICT", false, "another process is using this agent's identity";
}

impl ErrorCode {
    /// The numeric code, e.g. `103`.
    pub const fn number(self) -> u16 {
        self as u16
    }

    /// The class digit: 0 auth, 1 envelope, 2 capability/talent, 3 limits, 4 devices, 5 system.
    pub const fn class(self) -> u8 {
        (self.number() / 100) as u8
    }

    /// The CLI exit status for this code: `10 + class` (10 auth … 15 system).
    ///
    /// 0 is success, 1 a failure that is not an IF error, 2 a usage error (clap's convention).
    pub const fn exit_status(self) -> u8 {
        10 + self.class()
    }

    /// Parses `IF_ERR_103`, `103` or the name `REPLAY_DETECTED`.
    pub fn parse(text: &str) -> Option<ErrorCode> {
        let digits = text.strip_prefix("IF_ERR_").unwrap_or(text);
        if let Ok(n) = digits.parse::<u16>() {
            return ErrorCode::from_number(n);
        }
        ErrorCode::ALL.iter().copied().find(|c| c.name() == text)
    }
}

impl fmt::Display for ErrorCode {
    /// `IF_ERR_103 REPLAY_DETECTED`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IF_ERR_{:03} {}", self.number(), self.name())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            let mut text: heapless::String<16> = heapless::String::new();
            // "IF_ERR_" + at most 5 digits always fits in 16 bytes.
            let _ = write!(text, "IF_ERR_{:03}", self.number());
            s.serialize_str(&text)
        } else {
            s.serialize_u16(self.number())
        }
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if d.is_human_readable() {
            let text = <&str>::deserialize(d)?;
            ErrorCode::parse(text).ok_or_else(|| D::Error::custom("unknown IF error code"))
        } else {
            let n = u16::deserialize(d)?;
            ErrorCode::from_number(n).ok_or_else(|| D::Error::custom("unknown IF error code"))
        }
    }
}

/// An error with its code and a detail line that says what exactly was wrong.
#[derive(Clone, PartialEq, Eq)]
pub struct IfError {
    code: ErrorCode,
    detail: heapless::String<DETAIL_CAP>,
}

impl IfError {
    /// An error whose detail is the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        IfError { code, detail: heapless::String::new() }
    }

    /// An error with a detail line; text past [`DETAIL_CAP`] bytes is cut.
    pub fn with(code: ErrorCode, detail: &str) -> Self {
        let mut e = IfError::new(code);
        push_truncated(&mut e.detail, detail);
        e
    }

    /// An error with a formatted detail line, e.g. `IfError::format(code, format_args!("{n} bytes"))`.
    pub fn format(code: ErrorCode, args: fmt::Arguments<'_>) -> Self {
        let mut e = IfError::new(code);
        let mut w = Truncating(&mut e.detail);
        let _ = w.write_fmt(args);
        e
    }

    /// The code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The detail line, or the code's default message when none was given.
    pub fn detail(&self) -> &str {
        if self.detail.is_empty() { self.code.message() } else { &self.detail }
    }

    /// Whether retrying can succeed.
    pub fn retryable(&self) -> bool {
        self.code.retryable()
    }
}

impl From<ErrorCode> for IfError {
    fn from(code: ErrorCode) -> Self {
        IfError::new(code)
    }
}

impl fmt::Display for IfError {
    /// `IF_ERR_101 INVALID_ENVELOPE: <detail>`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail())
    }
}

impl fmt::Debug for IfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for IfError {}

/// The machine-readable form of an error: what replies, the DLQ and `--json` carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// `IF_ERR_103` in text formats, the number in binary ones.
    pub code: ErrorCode,
    /// `REPLAY_DETECTED`
    pub name: heapless::String<32>,
    /// The detail line.
    pub message: heapless::String<DETAIL_CAP>,
    /// Whether retrying can succeed.
    pub retryable: bool,
}

impl From<&IfError> for ErrorReport {
    fn from(e: &IfError) -> Self {
        let mut name = heapless::String::new();
        push_truncated(&mut name, e.code.name());
        let mut message = heapless::String::new();
        push_truncated(&mut message, e.detail());
        ErrorReport { code: e.code, name, message, retryable: e.retryable() }
    }
}

impl From<&ErrorReport> for IfError {
    fn from(r: &ErrorReport) -> Self {
        IfError::with(r.code, &r.message)
    }
}

/// Appends as much of `text` as fits, cutting at a character boundary.
pub(crate) fn push_truncated<const N: usize>(out: &mut heapless::String<N>, text: &str) {
    let room = N - out.len();
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // Cannot fail: `end` bytes fit in the remaining room.
    let _ = out.push_str(&text[..end]);
}

/// A `fmt::Write` that keeps what fits and drops the rest instead of failing.
struct Truncating<'a, const N: usize>(&'a mut heapless::String<N>);

impl<const N: usize> fmt::Write for Truncating<'_, N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        push_truncated(self.0, s);
        Ok(())
    }
}

/// `Result` with an [`IfError`].
pub type Result<T, E = IfError> = core::result::Result<T, E>;

/// `bail!(Code, "fmt", args..)`: return an [`IfError`] with a formatted detail.
#[macro_export]
macro_rules! if_bail {
    ($code:expr, $($arg:tt)+) => {
        return Err($crate::error::IfError::format($code, format_args!($($arg)+)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_are_unique_and_in_their_class() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(a.number(), b.number());
                assert_ne!(a.name(), b.name());
            }
            assert!(a.class() <= 5, "{a}");
            assert_eq!(ErrorCode::from_number(a.number()), Some(*a));
            assert_eq!(ErrorCode::parse(a.name()), Some(*a));
        }
    }

    #[test]
    fn seed_numbers_are_stable() {
        let fixed = [
            (ErrorCode::InvalidSignature, 1),
            (ErrorCode::InvalidToken, 2),
            (ErrorCode::PermissionDenied, 3),
            (ErrorCode::InvalidEnvelope, 101),
            (ErrorCode::ExpiredMessage, 102),
            (ErrorCode::ReplayDetected, 103),
            (ErrorCode::OutOfOrder, 104),
            (ErrorCode::CapabilityNotAllowed, 201),
            (ErrorCode::VersionNotAllowed, 202),
            (ErrorCode::TalentNotFound, 203),
            (ErrorCode::BudgetExceeded, 301),
            (ErrorCode::RateLimitExceeded, 302),
            (ErrorCode::CircuitBreakerOpen, 303),
            (ErrorCode::SystemError, 500),
        ];
        for (code, n) in fixed {
            assert_eq!(code.number(), n, "{code}");
        }
    }

    #[test]
    fn retryable_set_matches_design() {
        let retryable: Vec<_> = ErrorCode::ALL.iter().filter(|c| c.retryable()).map(|c| c.name()).collect();
        assert_eq!(
            retryable,
            [
                "RATE_LIMIT_EXCEEDED",
                "CIRCUIT_BREAKER_OPEN",
                "QUEUE_FULL",
                "DEVICE_UNREACHABLE",
                "DEVICE_TIMEOUT",
                "SYSTEM_ERROR",
                "WITNESS_UNAVAILABLE",
                "STORAGE_FULL"
            ]
        );
    }

    #[test]
    fn display_form() {
        let e = IfError::with(ErrorCode::InvalidEnvelope, "body is empty");
        assert_eq!(e.to_string(), "IF_ERR_101 INVALID_ENVELOPE: body is empty");
        assert_eq!(
            IfError::new(ErrorCode::InvalidSignature).to_string(),
            "IF_ERR_001 INVALID_SIGNATURE: signature does not verify"
        );
        assert_eq!(ErrorCode::SystemError.exit_status(), 15);
        assert_eq!(ErrorCode::InvalidSignature.exit_status(), 10);
    }

    #[test]
    fn long_detail_is_cut_on_a_char_boundary() {
        let long = "é".repeat(DETAIL_CAP);
        let e = IfError::with(ErrorCode::SystemError, &long);
        assert!(e.detail().len() <= DETAIL_CAP);
        assert!(e.detail().chars().all(|c| c == 'é'));
        let e = IfError::format(ErrorCode::SystemError, format_args!("{long}{long}"));
        assert!(e.detail().len() <= DETAIL_CAP && !e.detail().is_empty());
    }

    #[test]
    fn report_round_trips_in_json_and_postcard() {
        let e = IfError::with(ErrorCode::ReplayDetected, "seq 7 from alice");
        let r = ErrorReport::from(&e);
        let json = serde_json::to_string(&r).expect("json");
        assert!(json.contains("\"code\":\"IF_ERR_103\""), "{json}");
        assert!(json.contains("\"name\":\"REPLAY_DETECTED\""), "{json}");
        let back: ErrorReport = serde_json::from_str(&json).expect("parse");
        assert_eq!(IfError::from(&back), e);
        let bytes = postcard::to_allocvec(&r).expect("postcard");
        let back: ErrorReport = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, r);
        assert!(serde_json::from_str::<ErrorCode>("\"IF_ERR_999\"").is_err());
    }
}
