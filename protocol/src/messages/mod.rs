//! The JSON messages the agent publishes and its readers parse, typed once for both ends.
//!
//! Each type here is what goes on one topic of [`crate::topics`]: the retained [`status::Status`], the
//! [`tally::Tally`] feedback, the [`gpi::Gpi`] button events, the [`anchor::Anchor`] upstream with its [`anchor::Ack`], and the
//! collector's [`anchor::Evidence`], and the log's entry bundles for the archive, [`archive::Bundle`] with
//! its [`archive::BundleAck`]. The agent signs each as a publication for its topic
//! ([`crate::attest`]); a reader verifies that first and only then parses the object with these types.
//! Fields a newer agent adds are ignored by an older reader, and a missing figure reads as absent, so
//! agents and tools of neighbouring versions understand each other.

pub mod anchor;
pub mod archive;
pub mod gpi;
pub mod routing;
pub mod status;
pub mod tally;

pub use anchor::{Ack, Anchor, Evidence};
pub use archive::{Bundle, BundleAck, Part};
pub use gpi::Gpi;
pub use routing::{Route, Routing};
pub use status::{State, Status};
pub use tally::Tally;
