//! Live captions of a session: machine recognition of the floor audio ([`recognition`]),
//! human captioners over Zoom's CART API (their routes are `api::captioning`), the feed
//! where both meet and go out to viewers ([`feed`]), their storage ([`store`]), and
//! transcripts with speaker names from the floor log ([`speakers`]).

pub mod feed;
pub mod recognition;
pub mod speakers;
pub mod store;
