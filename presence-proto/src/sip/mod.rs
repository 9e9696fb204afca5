//! SIP message codec: stream framing, message parsing and serialization, typed header values.
//!
//! Two stages, as in httparse: [`Framer`] cuts a TCP byte stream into whole messages by
//! `Content-Length`, and [`Message::parse`] splits one message into its start line, unfolded header
//! lines and body. Header values stay raw bytes; the typed parsers in [`header`] and [`uri`] (nom 8)
//! decode the few headers a presence server reads, on demand.

pub mod framer;
mod grammar;
pub mod header;
pub mod message;
pub(crate) mod text;
pub mod uri;

pub use framer::{FrameError, Framer};
pub use header::{
    CSeq, ContentType, Event, HeaderName, NameAddr, Params, SubscriptionState, Via, token_list,
};
pub use message::{Header, Message, Method, ParseError, Salvaged, StartLine};
pub use uri::Uri;
